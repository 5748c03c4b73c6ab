// Step 1 of the optional custom domain, on the first deployment with it only: bind the host name to
// the app with TLS off (App Service checks the CNAME to the default host name and the asuid TXT
// record here). A managed certificate can be issued only for a bound host name, so TLS is switched on
// by custom-domain-tls.bicep once custom-domain-certificate.bicep has the certificate. main.bicep
// skips this module when the domain is already bound (customDomainBound): re-applying it would turn
// HTTPS off on a working domain for the rest of the deployment, or for good if the certificate step
// then failed.

@description('Function app name.')
param functionAppName string

@description('Custom host name, e.g. mcp.contoso.com (subdomain with a CNAME; apex domains are not supported on Flex).')
param customDomain string

resource site 'Microsoft.Web/sites@2024-11-01' existing = {
  name: functionAppName
}

resource binding 'Microsoft.Web/sites/hostNameBindings@2024-11-01' = {
  parent: site
  name: customDomain
  properties: {
    hostNameType: 'Verified'
    customHostNameDnsRecordType: 'CName'
    sslState: 'Disabled'
  }
}

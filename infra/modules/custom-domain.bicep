// Step 1 of the optional custom domain: bind the host name to the app (App Service checks
// the CNAME to the default host name and the asuid TXT record here) and request a free
// managed certificate for it. Flex Consumption keeps certificates on the site
// (Microsoft.Web/sites/certificates, "site-scoped"), not in the resource group.

@description('Function app name.')
param functionAppName string

@description('Custom host name, e.g. mcp.contoso.com (subdomain with a CNAME; apex domains are not supported on Flex).')
param customDomain string

@description('Azure region of the function app.')
param location string

resource site 'Microsoft.Web/sites@2024-11-01' existing = {
  name: functionAppName
}

resource binding 'Microsoft.Web/sites/hostNameBindings@2024-11-01' = {
  parent: site
  name: customDomain
  properties: {
    hostNameType: 'Verified'
    customHostNameDnsRecordType: 'CName'
    // The certificate cannot be issued before the binding exists; TLS is switched on in step 2.
    sslState: 'Disabled'
  }
}

resource certificate 'Microsoft.Web/sites/certificates@2024-11-01' = {
  parent: site
  name: replace(customDomain, '.', '-')
  location: location
  properties: {
    // canonicalName without a PFX or Key Vault reference requests an App Service managed certificate.
    canonicalName: customDomain
  }
  dependsOn: [
    binding
  ]
}

output thumbprint string = certificate.properties.thumbprint

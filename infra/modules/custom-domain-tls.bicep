// Step 3 of the optional custom domain, on every deployment with it: the one SNI binding with the
// certificate from step 2. A separate module from step 1 because one template cannot declare the
// same binding twice.

@description('Function app name.')
param functionAppName string

@description('Custom host name bound in step 1.')
param customDomain string

@description('Thumbprint of the certificate from step 2.')
param thumbprint string

resource site 'Microsoft.Web/sites@2024-11-01' existing = {
  name: functionAppName
}

resource binding 'Microsoft.Web/sites/hostNameBindings@2024-11-01' = {
  parent: site
  name: customDomain
  properties: {
    hostNameType: 'Verified'
    customHostNameDnsRecordType: 'CName'
    sslState: 'SniEnabled'
    thumbprint: thumbprint
  }
}

// Step 2 of the optional custom domain: enable SNI TLS on the binding with the managed
// certificate. A separate module because one template cannot declare the same binding twice.

@description('Function app name.')
param functionAppName string

@description('Custom host name bound in step 1.')
param customDomain string

@description('Thumbprint of the managed certificate issued in step 1.')
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

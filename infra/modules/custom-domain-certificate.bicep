// Step 2 of the optional custom domain, on every deployment with it: the TLS certificate, kept on the
// site (Flex Consumption "site-scoped" certificates, Microsoft.Web/sites/certificates; at most three
// private certificates per app). Either a free App Service managed certificate (canonicalName only;
// needs the host-name binding, which exists from step 1) or, as the fallback, a PFX imported from
// Key Vault (keyVaultId + keyVaultSecretName; App Service syncs renewed versions within 24 hours).
// The two kinds have different resource names, so switching between them creates the other one
// instead of rewriting a certificate in place.

@description('Function app name.')
param functionAppName string

@description('Custom host name bound in step 1.')
param customDomain string

@description('Azure region of the function app.')
param location string

@description('Resource ID of the Key Vault secret that holds the PFX (.../providers/Microsoft.KeyVault/vaults/<vault>/secrets/<name>); empty for a managed certificate.')
param keyVaultSecretId string = ''

var useKeyVault = !empty(keyVaultSecretId)
// "/subscriptions/.../vaults/<vault>/secrets/<name>" -> the vault's resource ID and the secret name.
var keyVaultId = useKeyVault ? split(keyVaultSecretId, '/secrets/')[0] : ''
var keyVaultSecretName = useKeyVault ? last(split(keyVaultSecretId, '/')) : ''
var baseName = replace(customDomain, '.', '-')

resource site 'Microsoft.Web/sites@2024-11-01' existing = {
  name: functionAppName
}

resource certificate 'Microsoft.Web/sites/certificates@2024-11-01' = {
  parent: site
  name: useKeyVault ? '${baseName}-kv' : baseName
  location: location
  properties: useKeyVault ? {
    keyVaultId: keyVaultId
    keyVaultSecretName: keyVaultSecretName
  } : {
    // canonicalName without a PFX or Key Vault reference requests an App Service managed certificate.
    canonicalName: customDomain
  }
}

output thumbprint string = certificate.properties.thumbprint

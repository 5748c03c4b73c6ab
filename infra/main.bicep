// Entry point for `azd up`: one resource group with a protected remote MCP server on Azure
// Functions Flex Consumption, and its Entra app registration (Microsoft Graph extension).
// Order matters and breaks a cycle: the function app is created first (its host name goes
// into the app registration's redirect URI), then the app registration, then the app
// settings (which carry the registration's client ID). The sign-in bridge's public client
// (when on) comes before the app registration, which pre-authorizes it.
// The optional custom domain is bound once (custom-domain.bicep, TLS off until the certificate
// exists); later deployments update only the certificate and the SNI binding (see customDomainBound).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names the resource group and the app registration.')
param environmentName string

@minLength(1)
@description('Region of all resources; it must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object ID of the user or service principal running azd; becomes an owner of the app registration. Empty to skip.')
param principalId string = ''

@description('Optional custom domain (a subdomain such as mcp.contoso.com, no scheme, no path). Leave empty on the first `azd up`; see docs/deploy.md.')
param customDomain string = ''

@description('The custom domain whose host-name binding already exists, i.e. the value of the output MCP_CUSTOM_DOMAIN_BOUND, which azd stores after a successful deployment (it stores no outputs of a failed one). When it equals customDomain, the binding with TLS off is not applied again: only the certificate and the SNI binding are, so HTTPS on the domain never drops during a provision. Empty to bind (again).')
param customDomainBound string = ''

@description('Optional TLS certificate for the custom domain from Key Vault: the resource ID of the Key Vault secret holding the PFX (/subscriptions/.../providers/Microsoft.KeyVault/vaults/<vault>/secrets/<name>; a Key Vault certificate\'s secret has the certificate\'s name). Empty for a free App Service managed certificate. See docs/deploy.md for the access it needs.')
param customDomainKeyVaultSecretId string = ''

@description('Sign-in bridge: the app\'s own origin acts as the OAuth authorization server and forwards sign-ins to Entra with a second, public-client app registration, so MCP clients that send the RFC 8707 resource parameter can sign in without a verified custom domain. On by default without a custom domain; see docs/deploy.md.')
param enableSignInBridge bool = empty(customDomain)

@description('Development environment (azd: MCP_DEVELOPMENT_ENVIRONMENT). Pre-authorizes and allows the Azure CLI, a public client with device-code sign-in (a phishing route, and pre-authorization removes the consent screen), and registers http://localhost:7071/consent for `func start`. Off by default; keep it off in production.')
param developmentEnvironment bool = false

@description('Agents and daemons that call the server as themselves (app-only tokens, README "Agents as callers"): their application (client) IDs, added to ENTRA_ALLOWED_CLIENT_IDS but never pre-authorized for the delegated scope.')
param agentClientIds array = []

@description('The same agents\' service principal object IDs: each is assigned the Tools.Execute.All app role.')
param agentServicePrincipalIds array = []

@description('Client applications pre-authorized for the user_impersonation scope AND allowed by the server (ENTRA_ALLOWED_CLIENT_IDS). Default: VS Code. The sign-in bridge\'s client joins when the bridge is on, the Azure CLI with developmentEnvironment. The one place to add a client.')
param allowedClientApplicationIds array = [
  'aebc6443-996d-45c2-90f0-388ff96faa56' // Visual Studio Code
]

@description('Python version of the Functions runtime.')
@allowed([
  '3.11'
  '3.12'
  '3.13'
])
param pythonVersion string = '3.13'

@description('Memory per instance in MB; 2048 is the Flex Consumption default.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Maximum number of instances (Flex Consumption: the lowest maximum is currently 1, the highest 1000; Learn, "Flex Consumption plan hosting", Considerations > Scale, 2026-03).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Always-ready instances for the HTTP functions; 0 scales to zero (no idle cost), more removes cold starts but is billed while idle.')
@minValue(0)
param alwaysReadyInstanceCount int = 0

// Generated once by azd and kept in the environment (.azure/<env>/config.json), so it survives later
// provisions: it signs MRTR requestState and the sign-in bridge's registered client IDs and consent
// cookies, which a new key on every deployment would invalidate. 44 letters and digits are valid
// base64 for 33 bytes. No Bicep default: a default would stop azd from generating (and keeping) it.
@secure()
@metadata({
  azd: {
    type: 'generate'
    config: {
      length: 44
      noSpecial: true
    }
  }
})
@description('HMAC key (base64, 32+ bytes) sealing MCP requestState and the sign-in bridge\'s client IDs and cookies, the same on every instance and deployment.')
param requestStateKey string

@description('Resource group name; empty for rg-{environmentName}.')
param resourceGroupName string = ''

@description('Optional service management reference of both app registrations (azd: AZURE_SERVICE_MANAGEMENT_REFERENCE), for tenants whose app management policy requires one (e.g. a Service Tree ID). Empty to leave it unset.')
param serviceManagementReference string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
// Must equal the service name in azure.yaml: azd deploys to the app tagged with it.
var serviceName = 'mcp'
var customDomainName = toLower(trim(customDomain))
var hasCustomDomain = !empty(customDomainName)
var functionAppName = 'func-mcp-${resourceToken}'
// The token keeps two subscriptions that use the same environment name in one tenant from
// sharing (and overwriting) one app registration.
var appRegistrationUniqueName = 'mcp-${environmentName}-${resourceToken}'
var bridgeRegistrationUniqueName = '${appRegistrationUniqueName}-bridge'
// Tags of both app registrations: azd down leaves them behind, so they can be found by environment
// (az ad app list --filter "tags/any(t:t eq 'azd-env-name:<env>')"). The template name matches
// metadata.template in azure.yaml.
var appRegistrationTags = [
  'azd-env-name:${environmentName}'
  'azd-template:entra-mcp-functions-python'
]
// Development only (developmentEnvironment): pre-authorized and allowed, never by default.
var azureCliClientId = '04b07795-8ddb-461a-bbee-02f9e1bf7b46'
// The custom domain is already bound (by an earlier successful deployment of this environment).
var customDomainAlreadyBound = hasCustomDomain && toLower(trim(customDomainBound)) == customDomainName

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-mcp-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package-${resourceToken}'
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module roleAssignments 'modules/role-assignments.bicep' = {
  name: 'role-assignments'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    principalId: identity.outputs.principalId
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    serviceName: serviceName
    identityId: identity.outputs.id
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    pythonVersion: pythonVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyInstanceCount: alwaysReadyInstanceCount
  }
  dependsOn: [
    // The host reads the deployment container with this identity as soon as code arrives.
    roleAssignments
  ]
}

// The real default host name (read from the created app), not a guess: new apps may get a
// regional "<name>-<hash>.<region>.azurewebsites.net" host name.
var publicBaseUrl = hasCustomDomain ? 'https://${customDomainName}' : 'https://${functionApp.outputs.defaultHostName}'

// Independent of everything else (it must not reference the API app: the API app pre-authorizes it).
module signInBridge 'modules/entra-bridge-app.bicep' = if (enableSignInBridge) {
  name: 'entra-bridge-app'
  scope: rg
  params: {
    uniqueName: bridgeRegistrationUniqueName
    displayName: 'MCP server (${environmentName}) sign-in bridge'
    publicBaseUrl: publicBaseUrl
    ownerPrincipalId: principalId
    tags: appRegistrationTags
    serviceManagementReference: serviceManagementReference
  }
}

var signInBridgeClientId = enableSignInBridge ? signInBridge!.outputs.clientId : ''
// The one list of client applications: pre-authorized on the scope AND ENTRA_ALLOWED_CLIENT_IDS.
// With the bridge on it includes the bridge's client ID, which tokens obtained through the
// bridge carry as azp; in a development environment the Azure CLI. union() drops duplicates.
var clientApplicationIds = union(allowedClientApplicationIds, developmentEnvironment ? [azureCliClientId] : [], enableSignInBridge ? [signInBridgeClientId] : [])
// What the server admits (ENTRA_ALLOWED_CLIENT_IDS): those clients, plus agents calling as themselves,
// which have nothing to do with the delegated scope and so are not pre-authorized for it.
var serverClientIds = union(clientApplicationIds, agentClientIds)

module entraApp 'modules/entra-app.bicep' = {
  name: 'entra-app'
  scope: rg
  params: {
    uniqueName: appRegistrationUniqueName
    displayName: 'MCP server (${environmentName})'
    customDomain: customDomainName
    publicBaseUrl: publicBaseUrl
    preAuthorizedClientIds: clientApplicationIds
    managedIdentityPrincipalId: identity.outputs.principalId
    ownerPrincipalId: principalId
    localConsentRedirectUri: developmentEnvironment
    tags: appRegistrationTags
    serviceManagementReference: serviceManagementReference
    agentServicePrincipalIds: agentServicePrincipalIds
  }
}

module appSettings 'modules/app-settings.bicep' = {
  name: 'app-settings'
  scope: rg
  params: {
    functionAppName: functionApp.outputs.name
    storageAccountName: storage.outputs.name
    identityClientId: identity.outputs.clientId
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    tenantId: tenant().tenantId
    entraClientId: entraApp.outputs.clientId
    allowedClientIds: serverClientIds
    appRoles: entraApp.outputs.appRoles
    appIdUri: entraApp.outputs.appIdUri
    publicBaseUrl: hasCustomDomain ? publicBaseUrl : ''
    bridgeClientId: signInBridgeClientId
    requestStateKey: requestStateKey
  }
}

// First deployment with this domain only: bind the host name with TLS off (the managed certificate
// cannot be issued before the binding exists). Later deployments skip it, so they never switch
// HTTPS off on a working domain, not even when the certificate step fails.
module customDomainBinding 'modules/custom-domain.bicep' = if (hasCustomDomain && !customDomainAlreadyBound) {
  name: 'custom-domain'
  scope: rg
  params: {
    functionAppName: functionApp.outputs.name
    customDomain: customDomainName
  }
  dependsOn: [
    // Avoid concurrent writes to the site (App Service answers 409 on overlapping updates).
    appSettings
  ]
}

// Every deployment with a custom domain: the certificate (managed, or from Key Vault) ...
module customDomainCertificate 'modules/custom-domain-certificate.bicep' = if (hasCustomDomain) {
  name: 'custom-domain-certificate'
  scope: rg
  params: {
    functionAppName: functionApp.outputs.name
    customDomain: customDomainName
    location: location
    keyVaultSecretId: customDomainKeyVaultSecretId
  }
  dependsOn: [
    // Dropped by ARM when the binding module is skipped (domain already bound).
    customDomainBinding
    appSettings
  ]
}

// ... and the one SNI binding that uses it.
module customDomainTls 'modules/custom-domain-tls.bicep' = if (hasCustomDomain) {
  name: 'custom-domain-tls'
  scope: rg
  params: {
    functionAppName: functionApp.outputs.name
    customDomain: customDomainName
    thumbprint: hasCustomDomain ? customDomainCertificate!.outputs.thumbprint : ''
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
// CNAME target for the custom domain, and the asuid TXT value that proves domain ownership.
output AZURE_FUNCTION_APP_HOSTNAME string = functionApp.outputs.defaultHostName
output AZURE_CUSTOM_DOMAIN_VERIFICATION_ID string = functionApp.outputs.customDomainVerificationId
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output MCP_URL string = '${publicBaseUrl}/mcp'
output ENTRA_TENANT_ID string = tenant().tenantId
output ENTRA_CLIENT_ID string = entraApp.outputs.clientId
output ENTRA_APP_ID_URI string = entraApp.outputs.appIdUri
output ENTRA_ALLOWED_CLIENT_IDS string = join(serverClientIds, ',')
output ENTRA_APP_OBJECT_ID string = entraApp.outputs.objectId
output ENTRA_APP_UNIQUE_NAME string = appRegistrationUniqueName
// The sign-in bridge's public client; empty when the bridge is off.
output ENTRA_BRIDGE_CLIENT_ID string = signInBridgeClientId
// Read back as customDomainBound by the next deployment (main.parameters.json): azd writes outputs to
// the environment only after a successful deployment, i.e. once binding, certificate and SNI exist.
output MCP_CUSTOM_DOMAIN_BOUND string = customDomainName

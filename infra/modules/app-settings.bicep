// The complete app settings of the function app: exactly what the code reads plus the
// platform's identity-based storage and telemetry settings. This resource replaces the
// whole settings collection, so everything the app needs must be listed here.
// Deliberately absent: FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION (Flex sets
// the runtime from functionAppConfig), AZURE_CLIENT_ID (azure-identity would pick it up
// implicitly; the code passes OBO_MANAGED_IDENTITY_CLIENT_ID explicitly), any credential.
// The one generated value, MCP_REQUEST_STATE_KEY, is not a credential: it lets every instance
// verify the integrity of the requestState it hands to clients between MCP round trips.

@description('Function app name.')
param functionAppName string

@description('Storage account used as AzureWebJobsStorage.')
param storageAccountName string

@description('Client ID of the user-assigned managed identity.')
param identityClientId string

@description('Application Insights connection string.')
param applicationInsightsConnectionString string

@description('Directory (tenant) ID.')
param tenantId string

@description('Application (client) ID of the MCP server app registration: the token audience.')
param entraClientId string

@description('Client application IDs allowed to call the server (the same list that is pre-authorized).')
param allowedClientIds array

@description('Application ID URI whose scopes the server requires.')
param appIdUri string

@description('Public https:// origin when a custom domain is used; empty to use the Azure host name.')
param publicBaseUrl string = ''

@description('Client ID of the sign-in bridge\'s public client app registration; empty when the bridge is off.')
param bridgeClientId string = ''

@description('App roles that admit an application calling as itself (MCP_APP_ROLES); the API app registration defines them.')
param appRoles array = []

@secure()
@description('HMAC key for MCP requestState (base64).')
param requestStateKey string

resource site 'Microsoft.Web/sites@2024-11-01' existing = {
  name: functionAppName
}

var platformSettings = {
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

var mcpSettings = {
  ENTRA_TENANT_ID: tenantId
  ENTRA_CLIENT_ID: entraClientId
  ENTRA_ALLOWED_CLIENT_IDS: join(allowedClientIds, ',')
  ENTRA_APP_ID_URI: appIdUri
  // Secretless on-behalf-of: the managed identity's token is the app registration's client assertion.
  OBO_MANAGED_IDENTITY_CLIENT_ID: identityClientId
  MCP_REQUEST_STATE_KEY: requestStateKey
  // An agent still needs its client ID in ENTRA_ALLOWED_CLIENT_IDS and the role granted (agentServicePrincipalIds).
  MCP_APP_ROLES: join(appRoles, ',')
}

// Without a custom domain the code derives its public URL from WEBSITE_HOSTNAME.
var publicUrlSettings = empty(publicBaseUrl) ? {} : {
  MCP_PUBLIC_BASE_URL: publicBaseUrl
}

// Setting ENTRA_BRIDGE_CLIENT_ID turns the sign-in bridge on (the bridge's client ID is then also in
// ENTRA_ALLOWED_CLIENT_IDS). The MCP_BRIDGE_* settings keep their code defaults: the client redirect
// URIs the bridge returns sign-ins to are the app's own choice, not something Entra knows.
var bridgeSettings = empty(bridgeClientId) ? {} : {
  ENTRA_BRIDGE_CLIENT_ID: bridgeClientId
}

resource appSettings 'Microsoft.Web/sites/config@2024-11-01' = {
  parent: site
  name: 'appsettings'
  properties: union(platformSettings, mcpSettings, publicUrlSettings, bridgeSettings)
}

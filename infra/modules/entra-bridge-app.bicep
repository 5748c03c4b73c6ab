// The sign-in bridge's own Entra app registration (Microsoft Graph Bicep extension): a public
// client, no secrets. The MCP server's origin acts as the OAuth authorization server for MCP
// clients and forwards /authorize and /token to Entra with this client ID and without the
// RFC 8707 `resource` parameter, which Entra rejects unless it is an identifier URI of the API
// app (AADSTS9010010), and `https://` identifier URIs need a verified domain.
// Entra sends the user back to the bridge's own callback (/oauth/entra-callback), which passes the code
// on to the MCP client only in the browser that consented (shared/bridge/binding.py): the clients'
// redirect URIs are never registered here, so a link to Entra with this public client ID cannot
// deliver a code anywhere else. This app does not reference the API app (that would be a cycle):
// the API app pre-authorizes this one for user_impersonation instead (entra-app.bicep).
extension microsoftGraphV1

@description('Immutable alternate key of the app registration (unique in the tenant).')
param uniqueName string

@description('Display name shown on the sign-in page and in the Entra admin center.')
param displayName string

@description('Object ID of the deploying user or service principal, added as owner; empty to skip.')
param ownerPrincipalId string = ''

@description('Tags of the app registration (main.bicep: the azd environment name and the template), so registrations that azd down leaves behind can be found.')
param tags array = []

@description('Service management reference (e.g. a Service Tree ID) required by some tenants\' app management policy; empty to leave it unset.')
param serviceManagementReference string = ''

@description('Public https:// origin of the function app (custom domain or Azure host name); the bridge\'s callback is {publicBaseUrl}/oauth/entra-callback.')
param publicBaseUrl string

// The bridge's callback, deployed and under `func start`. Entra ignores the port of a loopback
// redirect URI of a public client, so the loopback entries carry none (func start listens on 7071).
// The path is the bridge's alone: no MCP client listens on /oauth/entra-callback (theirs are
// /callback, /oauth/callback, ...), so a code Entra sends to a loopback entry reaches only a bridge
// running on the user's own machine, which checks its own cookie before passing it on.
var callbackPath = '/oauth/entra-callback'
var redirectUris = [
  '${publicBaseUrl}${callbackPath}'
  'http://localhost${callbackPath}'
  'http://127.0.0.1${callbackPath}'
]
var microsoftGraphAppId = '00000003-0000-0000-c000-000000000000'
var graphOpenIdScopeId = '37f7f235-527c-4136-accd-4a02d197296e'
var graphOfflineAccessScopeId = '7427e0e9-2fba-42fe-b0c0-848c9e6a8182'

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'
  notes: 'Public client of the MCP server sign-in bridge, created by azd (infra/modules/entra-bridge-app.bicep). It has no secrets by design; the MCP server app pre-authorizes it.'
  tags: tags
  serviceManagementReference: empty(serviceManagementReference) ? null : serviceManagementReference
  owners: {
    relationships: empty(ownerPrincipalId) ? [] : [ownerPrincipalId]
  }
  // A public client through its redirect URIs (the "Mobile and desktop" platform): authorization code
  // + PKCE, no client credential. Deliberately no passwordCredentials, keyCredentials, web or spa
  // platform. And "Allow public client flows" off: that switch would also open device-code and
  // password sign-in for this pre-authorized client ID, a phishing route the code flow never needs.
  isFallbackPublicClient: false
  publicClient: {
    redirectUris: redirectUris
  }
  // Declares (does not grant) the sign-in scopes the bridge asks for next to the MCP scope, so an
  // admin can consent for the whole tenant when user consent is off. The MCP scope itself needs
  // no consent: the API app pre-authorizes this client.
  requiredResourceAccess: [
    {
      resourceAppId: microsoftGraphAppId
      resourceAccess: [
        {
          id: graphOpenIdScopeId
          type: 'Scope'
        }
        {
          id: graphOfflineAccessScopeId
          type: 'Scope'
        }
      ]
    }
  ]
}

// Needed in the tenant before any user can sign in through the app.
resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
}

output clientId string = app.appId
output objectId string = app.id
output servicePrincipalId string = servicePrincipal.id
output redirectUris array = redirectUris

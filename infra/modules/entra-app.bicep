// The MCP server's Entra app registration (Microsoft Graph Bicep extension): the resource
// that access tokens are issued for, its one delegated scope, the clients that may get
// tokens for it without a consent prompt (including, when it is on, the sign-in bridge's public
// client from entra-bridge-app.bicep), and the federated credential that lets the function app's
// managed identity act as this app for on-behalf-of (no client secret).
extension microsoftGraphV1

@description('Immutable alternate key of the app registration (unique in the tenant).')
param uniqueName string

@description('Display name shown in consent prompts and the Entra admin center.')
param displayName string

@description('Optional custom domain; adds https://{customDomain}/mcp as an identifier URI (must be a verified domain of the tenant).')
param customDomain string = ''

@description('Public https:// origin of the server (custom domain or Azure host name); the consent page redirect URI is built from it.')
param publicBaseUrl string

@description('Client application IDs pre-authorized for user_impersonation (no consent prompt); main.bicep appends the sign-in bridge client ID when the bridge is on.')
param preAuthorizedClientIds array

@description('Principal (object) ID of the user-assigned managed identity trusted as a federated credential.')
param managedIdentityPrincipalId string

@description('Object ID of the deploying user or service principal, added as owner; empty to skip.')
param ownerPrincipalId string = ''

@description('Development environment only: also register http://localhost:7071/consent (the consent page under `func start`).')
param localConsentRedirectUri bool = false

@description('Tags of the app registration (main.bicep: the azd environment name and the template), so registrations that azd down leaves behind can be found.')
param tags array = []

@description('Service management reference (e.g. a Service Tree ID) required by some tenants\' app management policy; empty to leave it unset.')
param serviceManagementReference string = ''

@description('Object IDs of the service principals (agents, daemons) to assign the Tools.Execute.All app role to; empty by default.')
param agentServicePrincipalIds array = []

var tenantId = tenant().tenantId
// api://{tenantId}/{name} needs no self-reference to the appId and is accepted by the
// default tenant identifier-URI policy (which rejects most other api:// forms).
var apiIdentifierUri = 'api://${tenantId}/${uniqueName}'
var customIdentifierUri = 'https://${customDomain}/mcp'
var identifierUris = empty(customDomain) ? [apiIdentifierUri] : [apiIdentifierUri, customIdentifierUri]
// Deterministic, so re-deployments keep the same scope ID (a changed ID would invalidate
// pre-authorizations and existing consents).
var userImpersonationScopeId = guid(tenantId, uniqueName, 'user_impersonation')
// The app role that admits an application calling as itself (MCP_APP_ROLES; README "Agents as callers").
var toolsExecuteAllRole = 'Tools.Execute.All'
var toolsExecuteAllRoleId = guid(tenantId, uniqueName, toolsExecuteAllRole)
var microsoftGraphAppId = '00000003-0000-0000-c000-000000000000'
var graphUserReadScopeId = 'e1fe6dd8-ba31-4d61-89e7-88639da4683d'
// Token exchange audience of Entra ID in the public cloud, the only cloud the Graph Bicep
// extension supports.
var federatedCredentialAudience = 'api://AzureADTokenExchange'
// Landing page of the consent flow for the downstream (Graph) permission: the deployed origin, plus
// `func start` in a development environment (Entra accepts http only for localhost).
var consentRedirectUris = concat(['${publicBaseUrl}/consent'], localConsentRedirectUri ? ['http://localhost:7071/consent'] : [])

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'
  notes: 'MCP server (protected resource), created by azd (infra/modules/entra-app.bicep). Its credential is the function app managed identity (federated credential), no secrets.'
  identifierUris: identifierUris
  tags: tags
  serviceManagementReference: empty(serviceManagementReference) ? null : serviceManagementReference
  owners: {
    relationships: empty(ownerPrincipalId) ? [] : [ownerPrincipalId]
  }
  // For applications only: a user token never carries this role, and an app-only token is never
  // mistaken for a user's (the code decides from idtyp/scp, not from roles).
  appRoles: [
    {
      id: toolsExecuteAllRoleId
      value: toolsExecuteAllRole
      displayName: 'Call the MCP server tools as an application'
      description: 'Allows an application (an agent or a daemon) to call the MCP server tools as itself, without a signed-in user.'
      allowedMemberTypes: [
        'Application'
      ]
      isEnabled: true
    }
  ]
  api: {
    // v2 tokens: iss .../{tenant}/v2.0, aud = client ID, client in azp; the code accepts only these.
    requestedAccessTokenVersion: 2
    oauth2PermissionScopes: [
      {
        id: userImpersonationScopeId
        value: 'user_impersonation'
        type: 'User'
        isEnabled: true
        adminConsentDisplayName: 'Use the MCP server as the signed-in user'
        adminConsentDescription: 'Allows the client to call the MCP server tools on behalf of the signed-in user.'
        userConsentDisplayName: 'Use the MCP server as you'
        userConsentDescription: 'Allows the client to call the MCP server tools on your behalf.'
      }
    ]
    preAuthorizedApplications: [
      for clientId in preAuthorizedClientIds: {
        appId: clientId
        delegatedPermissionIds: [
          userImpersonationScopeId
        ]
      }
    ]
  }
  // Declares the downstream permission the on-behalf-of flow asks for (the sample get_my_profile
  // tool reads the user's profile); declaring it does not grant it.
  requiredResourceAccess: [
    {
      resourceAppId: microsoftGraphAppId
      resourceAccess: [
        {
          id: graphUserReadScopeId
          type: 'Scope'
        }
      ]
    }
  ]
  web: {
    redirectUris: consentRedirectUris
  }

  resource managedIdentityCredential 'federatedIdentityCredentials@v1.0' = {
    name: '${app.uniqueName}/function-app-managed-identity'
    description: 'The function app\'s user-assigned managed identity is this app\'s credential for on-behalf-of (no secret).'
    issuer: '${environment().authentication.loginEndpoint}${tenantId}/v2.0'
    subject: managedIdentityPrincipalId
    audiences: [
      federatedCredentialAudience
    ]
  }
}

// Needed in the tenant before any user can sign in to, or consent to, the app.
resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
}

// The role granted to each listed agent (an admin's application-permission grant, done here once).
resource agentRoleAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for agent in agentServicePrincipalIds: {
  appRoleId: toolsExecuteAllRoleId
  principalId: agent
  resourceId: servicePrincipal.id
}]

output clientId string = app.appId
output objectId string = app.id
output servicePrincipalId string = servicePrincipal.id
output apiIdentifierUri string = apiIdentifierUri
output appIdUri string = empty(customDomain) ? apiIdentifierUri : customIdentifierUri
output userImpersonationScopeId string = userImpersonationScopeId
output appRoles array = [toolsExecuteAllRole]

// The one identity the function app runs as. It is used for host storage, the deployment
// container, Application Insights ingestion, and as the federated credential of the app
// registration (secretless on-behalf-of), so no secret or connection string exists anywhere.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags for the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId

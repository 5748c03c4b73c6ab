// Least-privilege Azure RBAC for the function app's managed identity. Each assignment is
// scoped to the single resource it is needed on, never to the resource group.

@description('Storage account used for host storage and the deployment container.')
param storageAccountName string

@description('Application Insights component the app sends telemetry to.')
param applicationInsightsName string

@description('Principal (object) ID of the user-assigned managed identity.')
param principalId string

// Storage Blob Data Owner: the Functions host needs blob read/write plus blob leases and
// container management (host locks, secrets, the deployment package). Data Contributor lacks
// some of what the host does on the container, and Microsoft's Flex samples use Owner.
// No Queue/Table roles: the app has HTTP triggers only; Queue is needed for Durable
// Functions or queue-based triggers, Table for Durable Functions, neither of which exist here.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Monitoring Metrics Publisher: the only way to ingest into an App Insights resource with
// local auth disabled.
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storage 'Microsoft.Storage/storageAccounts@2025-01-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource storageBlobOwnerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisherAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

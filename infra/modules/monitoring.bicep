// Log Analytics + workspace-based Application Insights. Local (instrumentation-key) auth is
// disabled, so telemetry is only accepted from identities holding Monitoring Metrics Publisher.

@description('Log Analytics workspace name.')
param logAnalyticsName string

@description('Application Insights component name.')
param applicationInsightsName string

@description('Azure region.')
param location string

@description('Tags for both resources.')
param tags object = {}

@description('Days of log retention (30 is the free-retention default for PerGB2018).')
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    // Entra-only ingestion: the connection string alone cannot be used to send telemetry.
    DisableLocalAuth: true
  }
}

output applicationInsightsName string = appInsights.name
output applicationInsightsId string = appInsights.id
// Not a secret once local auth is disabled: it only tells the SDK where to send telemetry.
output connectionString string = appInsights.properties.ConnectionString

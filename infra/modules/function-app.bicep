// Flex Consumption plan and the function app itself. App settings are NOT set here: they
// need the app registration's client ID, and the app registration needs this app's host
// name (redirect URI), so settings are written afterwards by app-settings.bicep.

@description('Function app name; also the default host name <name>.azurewebsites.net.')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region.')
param location string

@description('Tags for the plan.')
param tags object = {}

@description('azd service name from azure.yaml; azd finds the app to deploy to by this tag.')
param serviceName string

@description('Resource ID of the user-assigned managed identity the app runs as.')
param identityId string

@description('URL of the blob container that receives the deployment package.')
param deploymentContainerUrl string

@description('Python version of the Functions runtime.')
param pythonVersion string

@description('Memory of each instance in MB.')
param instanceMemoryMB int

@description('Upper bound on scale-out.')
param maximumInstanceCount int

@description('Instances kept warm for the HTTP trigger group; 0 means scale to zero (cheapest).')
param alwaysReadyInstanceCount int

resource plan 'Microsoft.Web/serverfarms@2024-11-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    // Flex Consumption is Linux only.
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-11-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Creation-time opt-in to Flex site-scoped certificates (needed for the managed certificate
    // of the optional custom domain). It cannot be switched on for an existing app, so it is
    // always set. Not yet in the Bicep type catalog, hence the suppressed BCP037 warning.
    #disable-next-line BCP037
    siteScopedCertificatesEnabled: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        // 'http' is the per-function scale group of all HTTP-triggered functions.
        alwaysReady: alwaysReadyInstanceCount > 0 ? [
          {
            name: 'http'
            instanceCount: alwaysReadyInstanceCount
          }
        ] : []
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
  }
}

// No publishing passwords: azd deploys with an Entra token, FTP is never needed.
resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
output customDomainVerificationId string = site.properties.customDomainVerificationId

// Entry point for `azd up`: a resource group and everything the sample needs in it.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to name the resource group and resources.')
param environmentName string

@minLength(1)
@description('Azure region for all resources.')
param location string

@description('Object ID of the deploying user; gets Durable Task Data Contributor so the DTS dashboard works for them. Empty: no assignment.')
param principalId string = ''

@allowed([
  'Consumption'
  'Dedicated'
])
@description('Durable Task Scheduler SKU.')
param schedulerSkuName string = 'Consumption'

@minValue(1)
@description('Capacity units; used only with the Dedicated SKU.')
param schedulerCapacity int = 1

// Addresses allowed to reach the scheduler's endpoint. 0.0.0.0/0 lets any address try
// (every call still needs a Microsoft Entra ID token); narrow it to your own ranges, for
// example your office's public CIDR, once you know them.
@description('CIDR ranges allowed to call the scheduler.')
param schedulerIpAllowlist array = [
  '0.0.0.0/0'
]

@description('Name of the task hub the worker and client use.')
param taskHubName string = 'default'

@minValue(10)
@description('Seconds between demo runs of the deployed client.')
param clientRepeatSeconds int = 60

var tags = {
  'azd-env-name': environmentName
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module resources 'resources.bicep' = {
  name: 'resources'
  scope: rg
  params: {
    environmentName: environmentName
    location: location
    tags: tags
    principalId: principalId
    schedulerSkuName: schedulerSkuName
    schedulerCapacity: schedulerCapacity
    schedulerIpAllowlist: schedulerIpAllowlist
    taskHubName: taskHubName
    clientRepeatSeconds: clientRepeatSeconds
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = resources.outputs.registryLoginServer
output AZURE_CONTAINER_REGISTRY_NAME string = resources.outputs.registryName
output AZURE_CONTAINER_ENVIRONMENT_NAME string = resources.outputs.containerAppsEnvironmentName
output DTS_ENDPOINT string = resources.outputs.schedulerEndpoint
output DTS_TASKHUB_NAME string = resources.outputs.taskHubName
output WORKER_IDENTITY_CLIENT_ID string = resources.outputs.workerIdentityClientId
output CLIENT_IDENTITY_CLIENT_ID string = resources.outputs.clientIdentityClientId

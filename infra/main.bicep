// Entry point for `azd up`: a resource group and everything the sample needs in it.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to name the resource group and resources.')
param environmentName string

@minLength(1)
@description('Azure region for all resources.')
param location string

@description('Object ID of the identity running azd (AZURE_PRINCIPAL_ID); gets Durable Task Data Contributor on the scheduler for its dashboard. Empty: no assignment.')
param principalId string = ''

// A role assignment names the kind of principal it is for; a service principal (any CI pipeline)
// given as 'User' fails with UnmatchedPrincipalType.
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
@description('Kind of principal principalId is (AZURE_PRINCIPAL_TYPE): User, or ServicePrincipal when a pipeline runs azd.')
param principalType string = 'User'

// Durable Task Scheduler is not in every region; this default has it. List the regions that do:
// az provider show --namespace Microsoft.DurableTask --query "resourceTypes[?resourceType=='schedulers'].locations | [0]" --out table
@minLength(1)
@description('Azure region of the scheduler (DTS_LOCATION); may differ from location.')
param schedulerLocation string = 'westus2'

@allowed([
  'Consumption'
  'Dedicated'
])
@description('Durable Task Scheduler SKU.')
param schedulerSkuName string = 'Consumption'

// A Dedicated scheduler has at most 3 capacity units: more fails at preflight here, and in
// infra/preprovision.py before azd starts, instead of mid-deployment.
@minValue(1)
@maxValue(3)
@description('Capacity units (DTS_CAPACITY); used only with the Dedicated SKU, which allows 1-3.')
param schedulerCapacity int = 1

// The allow-list applies to every caller, the Container Apps replicas too, and their outbound
// addresses are not static: narrowing it needs static egress first (a NAT gateway on a
// workload-profiles environment in your own virtual network), or the worker and client are
// locked out. Every call needs a Microsoft Entra ID token with a Durable Task role either way.
@minLength(1)
@description('Comma-separated CIDR ranges allowed to call the scheduler (DTS_IP_ALLOWLIST); 0.0.0.0/0 is open to all.')
param schedulerIpAllowlist string = '0.0.0.0/0'

// The task hub needs 3-64 letters, digits or hyphens; infra/preprovision.py (azd's preprovision
// hook) checks the characters too, as Bicep has no pattern decorator.
@minLength(3)
@maxLength(64)
@description('Name of the task hub the worker and client use (DTS_TASKHUB_NAME).')
param taskHubName string = 'default'

@minValue(10)
@description('Seconds between demo runs of the deployed client.')
param clientRepeatSeconds int = 60

@minValue(1)
@maxValue(30)
@description('Most worker replicas the scale rule may start (WORKER_MAX_REPLICAS); one always runs.')
param workerMaxReplicas int = 5

@minValue(1)
@maxValue(1000)
@description('Work items of each kind one worker replica takes at once (WORKER_MAX_CONCURRENT_WORK_ITEMS); the scale rule adds a replica per this many waiting.')
param workerMaxConcurrentWorkItems int = 10

// Set by azd once a service is deployed: re-provisioning keeps the deployed images.
@description('Whether the worker app exists already (SERVICE_WORKER_RESOURCE_EXISTS).')
param workerExists bool = false

@description('Whether the client app exists already (SERVICE_CLIENT_RESOURCE_EXISTS).')
param clientExists bool = false

var ipAllowlist = filter(map(split(schedulerIpAllowlist, ','), cidr => trim(cidr)), cidr => !empty(cidr))

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
    principalType: principalType
    schedulerLocation: schedulerLocation
    schedulerSkuName: schedulerSkuName
    schedulerCapacity: schedulerCapacity
    schedulerIpAllowlist: ipAllowlist
    taskHubName: taskHubName
    clientRepeatSeconds: clientRepeatSeconds
    workerMaxReplicas: workerMaxReplicas
    workerMaxConcurrentWorkItems: workerMaxConcurrentWorkItems
    workerExists: workerExists
    clientExists: clientExists
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = resources.outputs.registryLoginServer
output AZURE_CONTAINER_REGISTRY_NAME string = resources.outputs.registryName
output AZURE_CONTAINER_ENVIRONMENT_NAME string = resources.outputs.containerAppsEnvironmentName
output DTS_LOCATION string = schedulerLocation
// What the scheduler was deployed with, read back from it: azd keeps outputs in the environment,
// and infra/preprovision.py warns before a later provision asks for another region or SKU.
output DTS_SCHEDULER_LOCATION string = resources.outputs.schedulerLocation
output DTS_SCHEDULER_SKU_NAME string = resources.outputs.schedulerSkuName
output DTS_ENDPOINT string = resources.outputs.schedulerEndpoint
output DTS_TASKHUB_NAME string = resources.outputs.taskHubName
output WORKER_IDENTITY_CLIENT_ID string = resources.outputs.workerIdentityClientId
output CLIENT_IDENTITY_CLIENT_ID string = resources.outputs.clientIdentityClientId

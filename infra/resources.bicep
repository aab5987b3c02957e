// Everything in the resource group: identities, logs, Container Apps, registry, Durable Task
// Scheduler and its task hub, and the role assignments that tie them together (no secrets).

param environmentName string
param location string
param tags object
param principalId string
param principalType string
param schedulerLocation string
param schedulerSkuName string
param schedulerCapacity int
@minLength(1) // an empty allow-list denies every caller
param schedulerIpAllowlist array
param taskHubName string
param clientRepeatSeconds int
param workerMaxReplicas int
param workerMaxConcurrentWorkItems int
param workerExists bool
param clientExists bool

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))

// Built-in role definition IDs.
var acrPullRole = '7f951dda-4ed3-4680-a7ca-43fe172d538d'
var durableTaskDataContributorRole = '0ad04412-c4d5-4796-b79c-f76d14c8d402'

var workerAppName = 'ca-worker-${resourceToken}'
var clientAppName = 'ca-client-${resourceToken}'
// What a new app runs until `azd deploy` puts the image it builds from Dockerfile.worker/.client.
var placeholderImage = 'mcr.microsoft.com/azuredocs/containerapps-helloworld:latest'
// The scale rule watches each kind of work item the worker takes; one replica per
// workerMaxConcurrentWorkItems waiting, the same figure the worker is told to take at once.
var workItemTypes = [
  'Orchestration'
  'Activity'
  'Entity'
]
// Container Apps probe over HTTP or TCP only: settings.py's Lifecycle answers /live and /ready on this port.
var healthPort = 8000
// Seconds between SIGTERM and the kill. Each process stops within settings.STOP_SECONDS (15) of
// SIGTERM, exiting with a warning if its work has not finished by then; this leaves room for that.
var terminationGracePeriodSeconds = 30
// Live: Python still answers (restart it if not). Ready: started and not stopping, so a new
// revision replaces the old one only once it runs. Only on the images azd built: the placeholder
// a new app runs until its first deploy serves no health port, and would fail them.
var healthProbes = [
  {
    type: 'Liveness'
    httpGet: {
      path: '/live'
      port: healthPort
    }
    periodSeconds: 10
    failureThreshold: 3
  }
  {
    type: 'Readiness'
    httpGet: {
      path: '/ready'
      port: healthPort
    }
    periodSeconds: 5
    failureThreshold: 3
  }
]

// One identity per process, each with only the role it needs.
resource workerIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-worker-${resourceToken}'
  location: location
  tags: tags
}

resource clientIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-client-${resourceToken}'
  location: location
  tags: tags
}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource containerAppsEnvironment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: 'cae-${resourceToken}'
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: 'cr${resourceToken}'
  location: location
  tags: tags
  sku: {
    name: 'Basic'
  }
  properties: {
    adminUserEnabled: false
  }
}

resource workerAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, workerIdentity.id, acrPullRole)
  scope: registry
  properties: {
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRole)
  }
}

resource clientAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, clientIdentity.id, acrPullRole)
  scope: registry
  properties: {
    principalId: clientIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRole)
  }
}

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: 'dts-${resourceToken}'
  location: schedulerLocation
  tags: tags
  properties: {
    ipAllowlist: schedulerIpAllowlist
    sku: schedulerSkuName == 'Dedicated' ? {
      name: 'Dedicated'
      capacity: schedulerCapacity
    } : {
      name: 'Consumption'
    }
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = {
  parent: scheduler
  name: taskHubName
}

// The worker's identity serves two callers: the worker process (it processes work items) and
// KEDA's azure-durabletask-scheduler scaler, which signs in as it to read the task hub's backlog.
// Durable Task Worker is documented for processing work items, not for the scaler's reads;
// Microsoft's samples for this scaler give its identity Durable Task Data Contributor, so it
// has that, on this task hub only. If the scaler could not read, `azd up` would succeed and the
// worker would never scale. A separate identity for the scaler would isolate nothing: any
// identity attached to the app can be used by the code in it.
resource workerDurableTaskRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(taskHub.id, workerIdentity.id, durableTaskDataContributorRole)
  scope: taskHub
  properties: {
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributorRole)
  }
}

// The client schedules orchestrations, signals and reads entities: Durable Task Data
// Contributor, but only on its task hub.
resource clientDurableTaskRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(taskHub.id, clientIdentity.id, durableTaskDataContributorRole)
  scope: taskHub
  properties: {
    principalId: clientIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributorRole)
  }
}

// Whoever runs azd can open the scheduler's dashboard in the Azure portal.
resource userDurableTaskRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(scheduler.id, principalId, durableTaskDataContributorRole)
  scope: scheduler
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributorRole)
  }
}

// The images azd deployed last, so that `azd provision` alone does not reset the apps.
module workerImage 'fetch-image.bicep' = {
  name: 'worker-image'
  params: {
    exists: workerExists
    name: workerAppName
  }
}

module clientImage 'fetch-image.bicep' = {
  name: 'client-image'
  params: {
    exists: clientExists
    name: clientAppName
  }
}

// 2025-01-01: the first stable API version whose custom scale rules take an identity.
resource workerApp 'Microsoft.App/containerApps@2025-01-01' = {
  name: workerAppName
  location: location
  tags: union(tags, {
    'azd-service-name': 'worker'
  })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${workerIdentity.id}': {}
    }
  }
  properties: {
    managedEnvironmentId: containerAppsEnvironment.id
    configuration: {
      activeRevisionsMode: 'Single'
      registries: [
        {
          server: registry.properties.loginServer
          identity: workerIdentity.id
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'worker'
          image: empty(workerImage.outputs.image) ? placeholderImage : workerImage.outputs.image
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
          env: [
            {
              name: 'ENDPOINT'
              value: scheduler.properties.endpoint
            }
            {
              name: 'TASKHUB'
              value: taskHub.name
            }
            {
              name: 'AZURE_MANAGED_IDENTITY_CLIENT_ID'
              value: workerIdentity.properties.clientId
            }
            {
              // Agrees with the scale rule's maxConcurrentWorkItemsCount below.
              name: 'WORKER_MAX_CONCURRENT_WORK_ITEMS'
              value: string(workerMaxConcurrentWorkItems)
            }
            {
              name: 'HEALTH_PORT'
              value: string(healthPort)
            }
          ]
          probes: empty(workerImage.outputs.image) ? [] : healthProbes
        }
      ]
      terminationGracePeriodSeconds: terminationGracePeriodSeconds
      // KEDA's azure-durabletask-scheduler scaler reads the task hub's backlog with the
      // worker's identity, which holds Durable Task Data Contributor on the task hub (see above).
      scale: {
        minReplicas: 1
        maxReplicas: workerMaxReplicas
        rules: [for workItemType in workItemTypes: {
          name: 'dts-${toLower(workItemType)}'
          custom: {
            type: 'azure-durabletask-scheduler'
            metadata: {
              endpoint: scheduler.properties.endpoint
              taskhubName: taskHub.name
              workItemType: workItemType
              maxConcurrentWorkItemsCount: string(workerMaxConcurrentWorkItems)
            }
            identity: workerIdentity.id
          }
        }]
      }
    }
  }
  dependsOn: [
    workerAcrPull
    workerDurableTaskRole
  ]
}

resource clientApp 'Microsoft.App/containerApps@2025-01-01' = {
  name: clientAppName
  location: location
  tags: union(tags, {
    'azd-service-name': 'client'
  })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${clientIdentity.id}': {}
    }
  }
  properties: {
    managedEnvironmentId: containerAppsEnvironment.id
    configuration: {
      activeRevisionsMode: 'Single'
      registries: [
        {
          server: registry.properties.loginServer
          identity: clientIdentity.id
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'client'
          image: empty(clientImage.outputs.image) ? placeholderImage : clientImage.outputs.image
          resources: {
            cpu: json('0.25')
            memory: '0.5Gi'
          }
          env: [
            {
              name: 'ENDPOINT'
              value: scheduler.properties.endpoint
            }
            {
              name: 'TASKHUB'
              value: taskHub.name
            }
            {
              name: 'AZURE_MANAGED_IDENTITY_CLIENT_ID'
              value: clientIdentity.properties.clientId
            }
            {
              // Repeat the demo instead of exiting, which Container Apps would treat as a crash.
              name: 'DEMO_REPEAT_SECONDS'
              value: string(clientRepeatSeconds)
            }
            {
              name: 'HEALTH_PORT'
              value: string(healthPort)
            }
          ]
          probes: empty(clientImage.outputs.image) ? [] : healthProbes
        }
      ]
      terminationGracePeriodSeconds: terminationGracePeriodSeconds
      scale: {
        minReplicas: 1
        maxReplicas: 1
      }
    }
  }
  dependsOn: [
    clientAcrPull
    clientDurableTaskRole
  ]
}

output registryLoginServer string = registry.properties.loginServer
output registryName string = registry.name
output containerAppsEnvironmentName string = containerAppsEnvironment.name
output schedulerEndpoint string = scheduler.properties.endpoint
output schedulerLocation string = scheduler.location
output schedulerSkuName string = scheduler.properties.sku.name
output taskHubName string = taskHub.name
output workerIdentityClientId string = workerIdentity.properties.clientId
output clientIdentityClientId string = clientIdentity.properties.clientId

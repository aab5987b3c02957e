// The image a container app runs now, or '' when the app does not exist yet. A module of its
// own, because a template cannot read an app it is also deploying. azd sets `exists` from
// SERVICE_<NAME>_RESOURCE_EXISTS once the service has been deployed.

param exists bool
param name string

resource app 'Microsoft.App/containerApps@2025-01-01' existing = if (exists) {
  name: name
}

// `app!`: the app is conditional, so Bicep types it as possibly null; `exists` guards the read.
output image string = exists ? app!.properties.template.containers[0].image : ''

// Pins the skaffold release whose JSON schema for skaffold.yaml (docs-v2/content/en/schemas/v4beta13.json)
// tests/test_manifests.py reads from the Go module cache. A module of its own, with nothing to build: required
// from ../go.mod, skaffold's many dependencies would join the build of the admission test.
module vid2mp3.local/validation/skaffold

go 1.24.1

require github.com/GoogleContainerTools/skaffold/v2 v2.16.1

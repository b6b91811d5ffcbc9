// Package validation runs the admission checks of Knative, eventing-rabbitmq and the RabbitMQ topology operator
// on the manifests of knative/ and rabbitmq-source/, offline (admission_test.go); its go.mod also pins the
// modules whose released CRDs and skaffold schema tests/manifests/test_manifests.py reads from the module cache.
package validation

// Command source-adapter runs the RabbitmqSource's data plane of eventing-rabbitmq (the pinned module's
// pkg/adapter, as its cmd/receive_adapter does) configured from the environment alone, without a Kubernetes API.
//
// Why not `go install knative.dev/eventing-rabbitmq/cmd/receive_adapter`: that main first builds a client
// configuration for the Kubernetes API (injection.ParseAndGetRESTConfigOrDie) and exits without one. The shared
// adapter main it then calls needs no API for what the local stack uses: no informers are registered unless a
// controller is, leader election is off by default, and TLS trust bundles and OIDC tokens are read only for
// https sinks and a K_OIDC_SERVICE_ACCOUNT. It does ask the context for a Kubernetes client once, to build the
// OIDC token provider, so this main gives it one that points at no server.
//
// The environment is the receive adapter's own, as the controller writes it into the adapter's Deployment:
// RABBIT_URL, RABBITMQ_QUEUE_NAME, RABBITMQ_CHANNEL_PARALLELISM, HTTP_SENDER_RETRY, HTTP_SENDER_BACKOFF_*,
// K_SINK, NAME, NAMESPACE, ... (stack/source.py derives them from rabbitmq-source/300-rabbitmq-source.yaml).
package main

import (
	"context"
	"log"
	"os"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"knative.dev/eventing/pkg/adapter/v2"
	kubeclient "knative.dev/pkg/client/injection/kube/client"
	"knative.dev/pkg/signals"

	rabbitmqadapter "knative.dev/eventing-rabbitmq/pkg/adapter"
)

// noAPIServer is an address no Kubernetes API answers on: the client built from it is never called here.
const noAPIServer = "https://kubernetes-api.invalid"

func main() {
	if os.Getenv(adapter.EnvConfigOIDCServiceAccount) != "" {
		log.Fatalf("%s needs the Kubernetes API to mint tokens; this adapter runs without one",
			adapter.EnvConfigOIDCServiceAccount)
	}
	ctx := signals.NewContext()
	// The health probes would listen on a fixed port (8080) that a pod has to itself; on a shared machine the
	// supervisor restarting the process is the liveness check.
	ctx = adapter.WithHealthProbesDisabled(ctx)
	ctx = context.WithValue(ctx, kubeclient.Key{}, kubernetes.NewForConfigOrDie(&rest.Config{Host: noAPIServer}))
	adapter.MainWithContext(ctx, "rabbitmqsource", rabbitmqadapter.NewEnvConfig, rabbitmqadapter.NewAdapter)
}

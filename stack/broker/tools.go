//go:build tools

package tools

import (
	_ "knative.dev/eventing-rabbitmq/cmd/dispatcher"
	_ "knative.dev/eventing-rabbitmq/cmd/ingress"
)

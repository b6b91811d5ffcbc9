package validation

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	rabbitmqcluster "github.com/rabbitmq/cluster-operator/v2/api/v1beta1"
	topology "github.com/rabbitmq/messaging-topology-operator/api/v1beta1"
	rabbitmqeventing "knative.dev/eventing-rabbitmq/pkg/apis/eventing/v1alpha1"
	rabbitmqsources "knative.dev/eventing-rabbitmq/pkg/apis/sources/v1alpha1"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	"knative.dev/eventing/pkg/apis/feature"
	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
	fakeeventingclient "knative.dev/eventing/pkg/client/injection/client/fake"
	"knative.dev/pkg/apis"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
)

// The folders a cluster applies (skaffold.yaml's rawYaml); every document in them is checked, whatever they hold
// at run time.
var manifestDirs = []string{"knative", "rabbitmq-source"}

type document struct {
	where      string // file:index, for messages
	apiVersion string
	kind       string
	name       string
	json       []byte
}

func repositoryRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func readDocuments(t *testing.T) []document {
	t.Helper()
	root := repositoryRoot(t)
	var found []document
	for _, dir := range manifestDirs {
		paths, err := filepath.Glob(filepath.Join(root, dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(paths)
		for _, path := range paths {
			found = append(found, splitDocuments(t, root, path)...)
		}
	}
	if len(found) == 0 {
		t.Fatalf("no manifests under %v", manifestDirs)
	}
	return found
}

func splitDocuments(t *testing.T, root, path string) []document {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	relative, _ := filepath.Rel(root, path)
	reader := utilyaml.NewYAMLReader(bufio.NewReader(file))
	var found []document
	for index := 0; ; index++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return found
		}
		if err != nil {
			t.Fatalf("%s: %v", relative, err)
		}
		// Strict: a key repeated in the YAML is an error, as the API server's decoder makes it one.
		data, err := yaml.YAMLToJSONStrict(raw)
		if err != nil {
			t.Fatalf("%s:%d: %v", relative, index, err)
		}
		if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
			continue // a document of comments only
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(data, &meta); err != nil {
			t.Fatalf("%s:%d: %v", relative, index, err)
		}
		found = append(found, document{
			where:      fmt.Sprintf("%s:%d", relative, index),
			apiVersion: meta.APIVersion,
			kind:       meta.Kind,
			name:       meta.Metadata.Name,
			json:       data,
		})
	}
}

// decodeStrict decodes as the API server does: field names match case-sensitively, and an unknown or repeated
// field is an error (encoding/json alone would match "TimeoutSeconds" and drop "timeOutSeconds" silently).
func decodeStrict(data []byte, into any) error {
	strictErrors, err := sigsjson.UnmarshalStrict(data, into)
	if err != nil {
		return err
	}
	return errors.Join(strictErrors...)
}

// knativeObject is what Knative's defaulting and validating webhooks call (knative.dev/pkg/webhook/resourcesemantics).
type knativeObject interface {
	apis.Defaultable
	apis.Validatable
}

// defaultAndValidate runs what the webhooks run on a create: the defaulting webhook's SetDefaults, then the
// validating webhook's Validate on the defaulted object.
func defaultAndValidate(ctx context.Context, data []byte, object knativeObject) error {
	if err := decodeStrict(data, object); err != nil {
		return err
	}
	object.SetDefaults(ctx)
	if fieldError := object.Validate(ctx); fieldError != nil {
		return fieldError
	}
	return nil
}

// topologyValidator is what the messaging-topology operator's validating webhook calls (controller-runtime's
// webhook.CustomValidator); it has no defaulting webhook.
type topologyValidator interface {
	runtime.Object
	ValidateCreate(ctx context.Context, object runtime.Object) (admission.Warnings, error)
}

func validateTopology(ctx context.Context, data []byte, object topologyValidator) error {
	if err := decodeStrict(data, object); err != nil {
		return err
	}
	_, err := object.ValidateCreate(ctx, object)
	return err
}

// admissionContext is the context a create request gets in the webhooks, with every configuration at its
// default (no config-defaults, config-features, config-autoscaler or config-br-defaults overrides on the cluster).
// eventing-rabbitmq's Trigger check looks the Trigger's Broker up through the eventing client: the fake client
// holds the Brokers of the manifests, defaulted, as the cluster would.
func admissionContext(t *testing.T, brokers []*eventingv1.Broker) context.Context {
	t.Helper()
	ctx := apis.WithinCreate(context.Background())
	flags, err := feature.NewFlagsConfigFromMap(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	ctx = feature.ToContext(ctx, flags)
	objects := make([]runtime.Object, len(brokers))
	for i, broker := range brokers {
		objects[i] = broker
	}
	ctx, _ = fakeeventingclient.With(ctx, objects...)
	return ctx
}

// admit decodes one document into its project's API type and runs that project's admission checks on it.
// Kinds of Kubernetes itself are decoded strictly into k8s.io/api types (their validation lives in the API
// server, which tests/manifests/test_manifests.py stands in for with the Kubernetes OpenAPI schemas).
func admit(ctx context.Context, doc document) error {
	switch doc.apiVersion + " " + doc.kind {
	case "serving.knative.dev/v1 Service":
		return defaultAndValidate(ctx, doc.json, &servingv1.Service{})
	case "eventing.knative.dev/v1 Broker":
		broker := &eventingv1.Broker{}
		if err := defaultAndValidate(ctx, doc.json, broker); err != nil {
			return err
		}
		// eventing-rabbitmq's webhook validates Brokers of its class after eventing's defaulting ran.
		return revalidateAs(ctx, broker, &rabbitmqeventing.RabbitBroker{})
	case "eventing.knative.dev/v1 Trigger":
		trigger := &eventingv1.Trigger{}
		if err := defaultAndValidate(ctx, doc.json, trigger); err != nil {
			return err
		}
		return revalidateAs(ctx, trigger, &rabbitmqeventing.RabbitTrigger{})
	case "sources.knative.dev/v1 PingSource":
		return defaultAndValidate(ctx, doc.json, &sourcesv1.PingSource{})
	case "sources.knative.dev/v1 SinkBinding":
		return defaultAndValidate(ctx, doc.json, &sourcesv1.SinkBinding{})
	case "eventing.knative.dev/v1alpha1 RabbitmqBrokerConfig":
		return defaultAndValidate(ctx, doc.json, &rabbitmqeventing.RabbitmqBrokerConfig{})
	case "sources.knative.dev/v1alpha1 RabbitmqSource":
		return defaultAndValidate(ctx, doc.json, &rabbitmqsources.RabbitmqSource{})
	case "rabbitmq.com/v1beta1 RabbitmqCluster":
		// The cluster operator has no admission webhook; its CRD schema is checked by tests/manifests/test_manifests.py.
		return decodeStrict(doc.json, &rabbitmqcluster.RabbitmqCluster{})
	case "rabbitmq.com/v1beta1 Queue":
		return validateTopology(ctx, doc.json, &topology.Queue{})
	case "rabbitmq.com/v1beta1 Exchange":
		return validateTopology(ctx, doc.json, &topology.Exchange{})
	case "rabbitmq.com/v1beta1 Binding":
		return validateTopology(ctx, doc.json, &topology.Binding{})
	case "rabbitmq.com/v1beta1 Policy":
		return validateTopology(ctx, doc.json, &topology.Policy{})
	case "v1 Namespace":
		return decodeStrict(doc.json, &corev1.Namespace{})
	case "v1 ConfigMap":
		return decodeStrict(doc.json, &corev1.ConfigMap{})
	case "v1 Service":
		return decodeStrict(doc.json, &corev1.Service{})
	case "apps/v1 StatefulSet":
		return decodeStrict(doc.json, &appsv1.StatefulSet{})
	case "networking.k8s.io/v1 NetworkPolicy":
		return decodeStrict(doc.json, &networkingv1.NetworkPolicy{})
	}
	// A kind nobody checks would pass silently: name it here with its project's type.
	return fmt.Errorf("no admission check for %s %s: add its API type to admit()", doc.apiVersion, doc.kind)
}

// revalidateAs hands the defaulted object to a second webhook's type (eventing-rabbitmq's RabbitBroker and
// RabbitTrigger share eventing's spec), as the API server sends the mutated object to every validating webhook.
func revalidateAs(ctx context.Context, defaulted any, object knativeObject) error {
	data, err := json.Marshal(defaulted)
	if err != nil {
		return err
	}
	return defaultAndValidate(ctx, data, object)
}

// defaultedBrokers are the manifests' Brokers as the cluster stores them, for eventing-rabbitmq's Trigger check.
func defaultedBrokers(t *testing.T, docs []document) []*eventingv1.Broker {
	t.Helper()
	ctx := apis.WithinCreate(context.Background())
	var brokers []*eventingv1.Broker
	for _, doc := range docs {
		if doc.apiVersion == "eventing.knative.dev/v1" && doc.kind == "Broker" {
			broker := &eventingv1.Broker{}
			if err := decodeStrict(doc.json, broker); err != nil {
				t.Fatalf("%s: %v", doc.where, err)
			}
			broker.SetDefaults(ctx)
			brokers = append(brokers, broker)
		}
	}
	return brokers
}

func TestEveryManifestPassesItsProjectsAdmissionChecks(t *testing.T) {
	docs := readDocuments(t)
	ctx := admissionContext(t, defaultedBrokers(t, docs))
	for _, doc := range docs {
		t.Run(doc.where+"/"+doc.kind+"/"+doc.name, func(t *testing.T) {
			if err := admit(ctx, doc); err != nil {
				t.Errorf("%s %s %s: %v", doc.where, doc.kind, doc.name, err)
			}
		})
	}
}

// --- planted faults ----------

type change func(object map[string]any) error

// at returns the map at path under object, creating maps on the way ("0" indexes a list).
func at(object map[string]any, path ...string) (map[string]any, error) {
	node := any(object)
	for _, part := range path {
		switch current := node.(type) {
		case map[string]any:
			next, ok := current[part]
			if !ok {
				next = map[string]any{}
				current[part] = next
			}
			node = next
		case []any:
			index, err := strconv.Atoi(part)
			if err != nil || index >= len(current) {
				return nil, fmt.Errorf("no item %s in a list of %d", part, len(current))
			}
			node = current[index]
		default:
			return nil, fmt.Errorf("%s: not a map or list", part)
		}
	}
	found, ok := node.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s is not a map", strings.Join(path, "."))
	}
	return found, nil
}

func set(value any, path ...string) change {
	return func(object map[string]any) error {
		parent, err := at(object, path[:len(path)-1]...)
		if err != nil {
			return err
		}
		parent[path[len(path)-1]] = value
		return nil
	}
}

func rename(to string, path ...string) change {
	return func(object map[string]any) error {
		parent, err := at(object, path[:len(path)-1]...)
		if err != nil {
			return err
		}
		from := path[len(path)-1]
		value, ok := parent[from]
		if !ok {
			return fmt.Errorf("no field %s to rename", strings.Join(path, "."))
		}
		delete(parent, from)
		parent[to] = value
		return nil
	}
}

// plant applies a change to a copy of the first document of the kind (the manifests are being edited by others:
// no test depends on one object's name) and returns the changed document.
func plant(t *testing.T, docs []document, apiVersion, kind string, changes ...change) document {
	t.Helper()
	for _, doc := range docs {
		if doc.apiVersion != apiVersion || doc.kind != kind {
			continue
		}
		var object map[string]any
		if err := json.Unmarshal(doc.json, &object); err != nil {
			t.Fatal(err)
		}
		for _, apply := range changes {
			if err := apply(object); err != nil {
				t.Fatalf("%s: cannot plant the fault: %v", doc.where, err)
			}
		}
		changed, err := json.Marshal(object)
		if err != nil {
			t.Fatal(err)
		}
		doc.json = changed
		return doc
	}
	t.Fatalf("no %s %s in the manifests to plant a fault in", apiVersion, kind)
	return document{}
}

const (
	servingV1  = "serving.knative.dev/v1"
	eventingV1 = "eventing.knative.dev/v1"
	sourcesV1  = "sources.knative.dev/v1"
)

func TestPlantedFaultsAreRejected(t *testing.T) {
	docs := readDocuments(t)
	ctx := admissionContext(t, defaultedBrokers(t, docs))
	faults := []struct {
		name       string
		apiVersion string
		kind       string
		changes    []change
		expected   string // a fragment of the error
	}{
		{
			"autoscaling annotation that is not a number", servingV1, "Service",
			[]change{set("many", "spec", "template", "metadata", "annotations", "autoscaling.knative.dev/max-scale")},
			"autoscaling.knative.dev/max-scale",
		},
		{
			"min-scale above max-scale", servingV1, "Service",
			[]change{
				set("5", "spec", "template", "metadata", "annotations", "autoscaling.knative.dev/min-scale"),
				set("2", "spec", "template", "metadata", "annotations", "autoscaling.knative.dev/max-scale"),
			},
			"min-scale",
		},
		{
			// config-defaults' max-revision-timeout-seconds is 600.
			"request timeout above the maximum", servingV1, "Service",
			[]change{set(601, "spec", "template", "spec", "timeoutSeconds")},
			"timeoutSeconds",
		},
		{
			"misspelt container field (unknown fields are rejected)", servingV1, "Service",
			[]change{set("Always", "spec", "template", "spec", "containers", "0", "imagePullPolicyy")},
			`unknown field "spec.template.spec.containers[0].imagePullPolicyy"`,
		},
		{
			// Trigger validation checks only the form of an attribute name (^[a-z][a-z0-9]*$), not that the
			// attribute exists: a misspelling in lowercase ("tpye") is admitted and matches no event (see
			// TestFaultsAdmissionLetThrough). What it does reject is a name outside that form, such as the
			// camel case of the Java SDK's getters.
			"Trigger filter on an attribute name in camel case", eventingV1, "Trigger",
			[]change{set("vid2mp3", "spec", "filter", "attributes", "dataSchema")},
			"Attribute name must start with a letter and can only contain lowercase alphanumeric",
		},
		{
			// Knative wants an ISO-8601 duration; "5s" is the Go form the dispatcher's own BACKOFF_DELAY takes.
			"backoff delay as a Go duration", eventingV1, "Trigger",
			[]change{set("5s", "spec", "delivery", "backoffDelay")},
			"invalid value: 5s: spec.delivery.backoffDelay",
		},
		{
			"unknown backoff policy", eventingV1, "Trigger",
			[]change{set("fibonacci", "spec", "delivery", "backoffPolicy")},
			"spec.delivery.backoffPolicy",
		},
		{
			"misspelt delivery field (unknown fields are rejected)", eventingV1, "Trigger",
			[]change{rename("deliver", "spec", "delivery")},
			`unknown field "spec.deliver"`,
		},
		{
			"RabbitMQ parallelism out of range", eventingV1, "Trigger",
			[]change{set("0", "metadata", "annotations", "rabbitmq.eventing.knative.dev/parallelism")},
			"rabbitmq.eventing.knative.dev/parallelism",
		},
		{
			// The webhook checks only that the kind is a well-formed identifier; a kind that is not
			// PodSpec-able but well formed (ConfigMap) is admitted (TestFaultsAdmissionLetThrough).
			"SinkBinding subject kind with its group in it", sourcesV1, "SinkBinding",
			[]change{set("Service.serving.knative.dev", "spec", "subject", "kind")},
			"spec.subject.kind",
		},
		{
			"Broker without its RabbitMQ config", eventingV1, "Broker",
			[]change{func(object map[string]any) error {
				spec, err := at(object, "spec")
				delete(spec, "config")
				return err
			}},
			"spec.config",
		},
		{
			"PingSource schedule that is not cron", sourcesV1, "PingSource",
			[]change{set("every minute", "spec", "schedule")},
			"spec.schedule",
		},
		{
			"RabbitmqSource parallelism out of range", "sources.knative.dev/v1alpha1", "RabbitmqSource",
			[]change{set(0, "spec", "rabbitmqResourcesConfig", "parallelism")},
			"expected 1 <= 0 <= 1000",
		},
		{
			"quorum queue that is not durable", "rabbitmq.com/v1beta1", "Queue",
			[]change{set("quorum", "spec", "type"), set(false, "spec", "durable")},
			"Quorum queues must have durable set to true",
		},
	}
	for _, fault := range faults {
		t.Run(fault.name, func(t *testing.T) {
			doc := plant(t, docs, fault.apiVersion, fault.kind, fault.changes...)
			err := admit(ctx, doc)
			if err == nil {
				t.Fatalf("%s %s with %s was admitted", doc.kind, doc.name, fault.name)
			}
			if !strings.Contains(err.Error(), fault.expected) {
				t.Fatalf("expected an error about %q, got: %v", fault.expected, err)
			}
			t.Logf("rejected: %v", err)
		})
	}
}

// Mistakes that Knative's admission lets through, asserted so that the comments above stay true (a newer
// Knative that starts rejecting one of them fails here, and the fault moves to the table above).
func TestFaultsAdmissionLetThrough(t *testing.T) {
	docs := readDocuments(t)
	ctx := admissionContext(t, defaultedBrokers(t, docs))
	admitted := []struct {
		name       string
		apiVersion string
		kind       string
		changes    []change
	}{
		{
			"Trigger filter on a misspelt lowercase attribute", eventingV1, "Trigger",
			[]change{set("vid2mp3", "spec", "filter", "attributes", "tpye")},
		},
		{
			"SinkBinding subject of a kind without a pod spec", sourcesV1, "SinkBinding",
			[]change{set("v1", "spec", "subject", "apiVersion"), set("ConfigMap", "spec", "subject", "kind")},
		},
	}
	for _, fault := range admitted {
		t.Run(fault.name, func(t *testing.T) {
			doc := plant(t, docs, fault.apiVersion, fault.kind, fault.changes...)
			if err := admit(ctx, doc); err != nil {
				t.Fatalf("now rejected (move it to TestPlantedFaultsAreRejected): %v", err)
			}
		})
	}
}

"""The local stack: real RabbitMQ, MariaDB, FerretDB, the Knative RabbitMQ broker data plane and every function,
run as project-local processes and wired from the same Knative manifests a cluster reads."""

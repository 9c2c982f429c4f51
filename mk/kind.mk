# Local Kubernetes: build the three images, load them into a kind cluster, deploy, smoke-test.
# Included by the top-level Makefile (`-include mk/kind.mk`), which defines PY and `venv`.
# Image names and tags are defined here once; tests check the kind overlay and CI agree.

KIND ?= kind
KUBECTL ?= kubectl
DOCKER ?= docker
PY ?= .venv/bin/python

KIND_CLUSTER := ct-triage
KIND_NAMESPACE := ct-triage
KIND_OVERLAY := kube-config/overlays/kind
GATEWAY_IMAGE := ct-triage/gateway:dev
TFS_IMAGE := ct-triage/tf-serving:dev
# The DICOM node (dicom-node/, docs/dicom-node.md); its context is dicom-node/ (it imports no
# other package of this repository).
DICOM_NODE_IMAGE := ct-triage/dicom-node:dev
# The node image kind v0.29.0 (KIND_VERSION in .github/workflows/ci.yml) publishes for Kubernetes
# 1.33, pinned by digest so a cluster is the same everywhere; CI's kubectl has the same version
# (KUBECTL_VERSION there) and tests/deploy/test_release.py checks they agree with each other and
# with the Kubernetes version the manifests are validated against.
# The node image is multi-arch; the tensorflow/serving image is amd64-only (docs/production.md).
KIND_NODE_IMAGE := kindest/node:v1.33.1@sha256:050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f
METRICS_SERVER_VERSION := v0.7.2
METRICS_SERVER_URL := https://github.com/kubernetes-sigs/metrics-server/releases/download/$(METRICS_SERVER_VERSION)/components.yaml
KIND_PF_PORT ?= 9696
# The node's DICOM and HTTP ports on this machine during kind-smoke (port-forwarded).
KIND_DICOM_PF_PORT ?= 11112
KIND_DICOM_HTTP_PF_PORT ?= 18080
KIND_ROLLOUT_TIMEOUT ?= 300s
KIND_CTX := --context kind-$(KIND_CLUSTER)

.PHONY: kind-up images kind-load deploy port-forward kind-smoke kind-logs kind-down

kind-up: ## create the kind cluster (if absent) with metrics-server for the HPAs
	@if $(KIND) get clusters | grep -qx '$(KIND_CLUSTER)'; then \
		echo "kind cluster $(KIND_CLUSTER) exists"; \
	else \
		$(KIND) create cluster --config kind-config.yaml --name $(KIND_CLUSTER) \
			--image $(KIND_NODE_IMAGE) --wait 120s; \
	fi
	$(KUBECTL) $(KIND_CTX) apply -f $(METRICS_SERVER_URL)
	@# kind's kubelets serve self-signed certificates; metrics-server must skip verifying them.
	@if ! $(KUBECTL) $(KIND_CTX) -n kube-system get deploy metrics-server \
		-o jsonpath='{.spec.template.spec.containers[0].args}' | grep -q kubelet-insecure-tls; then \
		$(KUBECTL) $(KIND_CTX) -n kube-system patch deploy metrics-server --type=json \
			-p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'; \
	fi
	$(KUBECTL) $(KIND_CTX) -n kube-system rollout status deploy/metrics-server --timeout=180s

images: ## build the gateway (context: the repository root), TF Serving and DICOM node images
	$(DOCKER) build -f gateway/Dockerfile -t $(GATEWAY_IMAGE) .
	$(DOCKER) build -t $(TFS_IMAGE) model-server
	$(DOCKER) build -t $(DICOM_NODE_IMAGE) dicom-node

kind-load: ## copy the local images into the kind nodes
	$(KIND) load docker-image --name $(KIND_CLUSTER) $(GATEWAY_IMAGE) $(TFS_IMAGE) \
		$(DICOM_NODE_IMAGE)

deploy: ## apply the kind overlay
	$(KUBECTL) $(KIND_CTX) apply -k $(KIND_OVERLAY)

port-forward: ## gateway on http://127.0.0.1:$(KIND_PF_PORT) (foreground)
	$(KUBECTL) $(KIND_CTX) -n $(KIND_NAMESPACE) port-forward svc/gateway $(KIND_PF_PORT):80

# What went wrong: pods, events, descriptions and logs (a command list, used by two targets).
define KIND_DUMP
$(KUBECTL) $(KIND_CTX) -n $(KIND_NAMESPACE) get all,hpa,pdb,networkpolicy -o wide; \
$(KUBECTL) $(KIND_CTX) -n $(KIND_NAMESPACE) get events --sort-by=.lastTimestamp; \
$(KUBECTL) $(KIND_CTX) -n $(KIND_NAMESPACE) describe deploy,pods; \
$(KUBECTL) $(KIND_CTX) -n $(KIND_NAMESPACE) logs -l app.kubernetes.io/part-of=ct-triage \
	--all-containers --prefix --tail=200
endef

kind-logs: ## show pods, events, descriptions and logs in the namespace
	-$(KIND_DUMP)

# The whole chain. The port-forwards (the gateway's HTTP port; the DICOM node's DICOM and HTTP
# ports) run in the background and are killed however the smoke ends; rollouts restart so pods
# pick up freshly loaded images with the same tag. The smoke checks the node with C-ECHO and a
# C-STORE of a small CT series, then that the node asked the gateway (its /metrics); kind has no
# PACS, so the results' delivery is not checked here (docs/dicom-node.md).
kind-smoke: venv kind-up images kind-load deploy ## deploy to kind and run `ct-triage smoke` against it
	$(KUBECTL) $(KIND_CTX) -n $(KIND_NAMESPACE) rollout restart deploy/tf-serving deploy/gateway deploy/dicom-node
	@if ! { $(KUBECTL) $(KIND_CTX) -n $(KIND_NAMESPACE) rollout status deploy/tf-serving --timeout=$(KIND_ROLLOUT_TIMEOUT) && \
	       $(KUBECTL) $(KIND_CTX) -n $(KIND_NAMESPACE) rollout status deploy/gateway --timeout=$(KIND_ROLLOUT_TIMEOUT) && \
	       $(KUBECTL) $(KIND_CTX) -n $(KIND_NAMESPACE) rollout status deploy/dicom-node --timeout=$(KIND_ROLLOUT_TIMEOUT); }; then \
		$(KIND_DUMP) || true; exit 1; \
	fi; \
	$(KUBECTL) $(KIND_CTX) -n $(KIND_NAMESPACE) port-forward svc/gateway $(KIND_PF_PORT):80 >/tmp/ct-triage-pf.log 2>&1 & \
	pf=$$!; \
	$(KUBECTL) $(KIND_CTX) -n $(KIND_NAMESPACE) port-forward svc/dicom-node \
		$(KIND_DICOM_PF_PORT):11112 $(KIND_DICOM_HTTP_PF_PORT):8080 >/tmp/ct-triage-pf-dicom.log 2>&1 & \
	pfd=$$!; trap 'kill $$pf $$pfd 2>/dev/null || true' EXIT; \
	if ! $(VENV)/bin/ct-triage smoke --base-url http://127.0.0.1:$(KIND_PF_PORT) \
		--kube --namespace $(KIND_NAMESPACE) --context kind-$(KIND_CLUSTER) \
		--dicom-node 127.0.0.1:$(KIND_DICOM_PF_PORT) \
		--dicom-node-http http://127.0.0.1:$(KIND_DICOM_HTTP_PF_PORT); then \
		cat /tmp/ct-triage-pf.log /tmp/ct-triage-pf-dicom.log; $(KIND_DUMP) || true; exit 1; \
	fi

kind-down: ## delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER)

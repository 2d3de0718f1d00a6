"""Real-world manifests (as kubectl users write them) shared by the crds tests."""

from __future__ import annotations

from typing import Any

import yaml

DEPLOYMENT_TEMPLATE = """
metadata:
  labels: {app: trainer}
spec:
  serviceAccountName: trainer
  containers:
  - name: trainer
    image: ghcr.io/example/trainer@sha256:0123456789abcdef
    command: ["python", "-m", "train"]
    args: ["--epochs", "10"]
    env:
    - {name: RANK, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['rank']"}}}
    - {name: NODE, valueFrom: {fieldRef: {apiVersion: v1, fieldPath: spec.nodeName}}}
    - {name: CPU_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
    - {name: LR, valueFrom: {configMapKeyRef: {name: hparams, key: lr}}}
    - {name: TOKEN, valueFrom: {secretKeyRef: {name: creds, key: token, optional: true}}}
    envFrom:
    - configMapRef: {name: common}
    - {prefix: S_, secretRef: {name: extra}}
    resources:
      limits: {nvidia.com/gpu: 8, cpu: "32", memory: 256Gi}
    volumeMounts:
    - {name: shm, mountPath: /dev/shm}
    - {name: config, mountPath: /etc/trainer, readOnly: true, subPath: trainer.yaml}
  volumes:
  - {name: shm, emptyDir: {medium: Memory, sizeLimit: 64Gi}}
  - name: config
    configMap:
      name: trainer-config
      items: [{key: trainer.yaml, path: trainer.yaml}]
      defaultMode: 0444
"""

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: prod
  labels: {app: web, app.kubernetes.io/part-of: shop}
  annotations: {prometheus.io/scrape: "true"}
spec:
  restartPolicy: OnFailure
  priorityClassName: high
  priority: 1000
  terminationGracePeriodSeconds: 60
  activeDeadlineSeconds: 3600
  hostname: web-0
  subdomain: web
  dnsPolicy: ClusterFirstWithHostNet
  hostNetwork: true
  nodeSelector: {kubernetes.io/os: linux}
  securityContext: {runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000, runAsNonRoot: true}
  initContainers:
  - name: init-db
    image: busybox
    command: [sh, -c, "until nslookup db; do sleep 2; done"]
  containers:
  - name: web
    image: nginx:1.25
    imagePullPolicy: Always
    workingDir: /srv
    stdin: true
    tty: true
    ports:
    - {name: http, containerPort: 8080, hostPort: 80, hostIP: 0.0.0.0}
    - {name: metrics, containerPort: 9090, protocol: UDP}
    resources:
      requests: {cpu: 250m, memory: 64Mi}
      limits: {cpu: 500m, memory: 128Mi}
    livenessProbe:
      httpGet:
        path: /healthz
        port: 8080
        scheme: HTTPS
        httpHeaders: [{name: X-Probe, value: live}]
      initialDelaySeconds: 3
      periodSeconds: 5
    readinessProbe:
      tcpSocket: {port: http}
    startupProbe:
      exec: {command: [cat, /tmp/ready]}
      failureThreshold: 30
    securityContext:
      privileged: false
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {add: [NET_BIND_SERVICE], drop: [ALL]}
    lifecycle:
      preStop: {exec: {command: [nginx, -s, quit]}}
    volumeMounts:
    - {name: cache, mountPath: /cache}
    - {name: host, mountPath: /host, readOnly: true}
    - {name: secret, mountPath: /secret}
    - {name: data, mountPath: /data}
  volumes:
  - {name: cache, emptyDir: {}}
  - {name: host, hostPath: {path: /var/log, type: Directory}}
  - {name: secret, secret: {secretName: web-tls, defaultMode: 0400}}
  - {name: data, persistentVolumeClaim: {claimName: web-data}}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions:
          - {key: nvidia.com/gpu.product, operator: In, values: [NVIDIA-H100-80GB-HBM3]}
          matchFields:
          - {key: metadata.name, operator: NotIn, values: [bad-node]}
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 50
        preference:
          matchExpressions: [{key: zone, operator: In, values: [a]}]
    podAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - labelSelector: {matchLabels: {app: cache}}
        topologyKey: kubernetes.io/hostname
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          labelSelector:
            matchExpressions: [{key: app, operator: In, values: [web]}]
          topologyKey: topology.kubernetes.io/zone
          namespaces: [prod]
  tolerations:
  - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
  - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 300}
  - {key: dedicated, operator: Equal, value: web, effect: NoSchedule}
  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: DoNotSchedule
    labelSelector: {matchLabels: {app: web}}
  schedulingGates: [{name: example.com/quota}]
status:
  phase: Running
  hostIP: 10.0.0.5
  podIP: 10.244.1.7
  podIPs: [{ip: 10.244.1.7}]
  startTime: "2024-05-01T10:00:00Z"
  qosClass: Burstable
  conditions:
  - {type: Ready, status: "True", lastTransitionTime: "2024-05-01T10:00:05Z"}
  initContainerStatuses:
  - name: init-db
    ready: true
    restartCount: 0
    image: busybox:latest
    imageID: docker.io/library/busybox@sha256:abc
    state:
      terminated: {exitCode: 0, reason: Completed, startedAt: "2024-05-01T10:00:01Z",
                   finishedAt: "2024-05-01T10:00:02Z", containerID: "containerd://1"}
  containerStatuses:
  - name: web
    ready: true
    started: true
    restartCount: 2
    image: nginx:1.25
    imageID: docker.io/library/nginx@sha256:def
    containerID: containerd://2
    state: {running: {startedAt: "2024-05-01T10:00:03Z"}}
    lastState:
      terminated: {exitCode: 137, signal: 9, reason: OOMKilled, message: killed}
"""

NODE = """
apiVersion: v1
kind: Node
metadata:
  name: gpu-node-1
  labels: {kubernetes.io/hostname: gpu-node-1, nvidia.com/gpu.count: "8"}
spec:
  podCIDR: 10.244.1.0/24
  podCIDRs: [10.244.1.0/24]
  providerID: ray://node/abc123
  unschedulable: false
  taints:
  - {key: nvidia.com/gpu, value: present, effect: NoSchedule}
  - {key: node.kubernetes.io/unreachable, effect: NoExecute, timeAdded: "2024-05-01T10:00:00Z"}
status:
  capacity: {cpu: "96", memory: 1056440300Ki, nvidia.com/gpu: "8", pods: "110", ephemeral-storage: 3Ti}
  allocatable: {cpu: 95500m, memory: 1000Gi, nvidia.com/gpu: "8", pods: "110"}
  conditions:
  - type: Ready
    status: "True"
    reason: KubeletReady
    message: kubelet is posting ready status
    lastHeartbeatTime: "2024-05-01T10:00:00Z"
    lastTransitionTime: "2024-04-01T00:00:00Z"
  addresses:
  - {type: InternalIP, address: 10.0.0.5}
  - {type: Hostname, address: gpu-node-1}
  daemonEndpoints: {kubeletEndpoint: {Port: 10250}}
  nodeInfo:
    machineID: m1
    systemUUID: u1
    bootID: b1
    kernelVersion: 6.5.0
    osImage: Ubuntu 22.04
    containerRuntimeVersion: containerd://1.7
    kubeletVersion: kray-0.1.0
    kubeProxyVersion: kray-0.1.0
    operatingSystem: linux
    architecture: amd64
"""

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod, labels: {app: web}}
spec:
  type: NodePort
  selector: {app: web}
  clusterIP: 10.96.0.20
  clusterIPs: [10.96.0.20]
  sessionAffinity: ClientIP
  publishNotReadyAddresses: true
  ports:
  - {name: http, port: 80, targetPort: http, nodePort: 30080}
  - {name: metrics, port: 9090, targetPort: 9090, protocol: TCP}
status:
  loadBalancer: {}
"""

ENDPOINTS = """
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: prod}
subsets:
- addresses:
  - ip: 10.244.1.7
    hostname: web-0
    nodeName: gpu-node-1
    targetRef: {kind: Pod, namespace: prod, name: web-0, uid: "1234"}
  notReadyAddresses: [{ip: 10.244.1.8}]
  ports: [{name: http, port: 8080, protocol: TCP}]
"""


def load(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data

{{/* Labels every object carries. */}}
{{- define "sluice.labels" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* Selector labels of one stage's pods; call with (dict "root" $ "stage" "collector"). */}}
{{- define "sluice.selector" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .stage }}
{{- end }}

{{- define "sluice.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "sluice.secretName" -}}
{{ .Values.existingSecret | default (printf "%s-secrets" .Release.Name) }}
{{- end }}

{{/* The environment every stage shares: Kafka, the lake, the config file, its pod name as instance id. */}}
{{- define "sluice.env" -}}
- name: SLUICE_CONFIG
  value: /etc/sluice/sluice.yaml
- name: SLUICE_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: SLUICE_DATA_DIR
  value: /var/lib/sluice
- name: SLUICE_LOG_FORMAT
  value: json
- name: SLUICE_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: SLUICE_BROKERS
  value: {{ join "," .Values.kafka.brokers | quote }}
{{- if .Values.kafka.tls }}
- name: SLUICE_KAFKA_TLS
  value: "true"
{{- end }}
{{- if .Values.kafka.tlsCA }}
- name: SLUICE_KAFKA_TLS_CA_FILE
  value: /etc/sluice/secrets/kafka-ca.pem
{{- end }}
{{- with .Values.kafka.saslMechanism }}
- name: SLUICE_KAFKA_SASL_MECHANISM
  value: {{ . | quote }}
{{- end }}
{{- with .Values.kafka.saslUser }}
- name: SLUICE_KAFKA_SASL_USER
  value: {{ . | quote }}
{{- end }}
- name: SLUICE_LAKE
  value: {{ .Values.lake.url | quote }}
{{- with .Values.lake.s3Endpoint }}
- name: SLUICE_S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.lake.s3Region }}
- name: SLUICE_S3_REGION
  value: {{ . | quote }}
{{- end }}
{{- if .Values.lake.s3PathStyle }}
- name: SLUICE_S3_PATH_STYLE
  value: "true"
{{- end }}
- name: SLUICE_CATALOG_URI
  value: {{ required "lake.catalogUri: the loaders and aggregators of several pods share the lake's tables through an Iceberg REST catalog; set its http(s):// URL" .Values.lake.catalogUri | quote }}
{{- with .Values.lake.catalogWarehouse }}
- name: SLUICE_CATALOG_WAREHOUSE
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* Secrets as environment: every key of the Secret that is set; optional, so a missing key is no error. */}}
{{- define "sluice.secretEnv" -}}
{{- $name := include "sluice.secretName" . -}}
{{- range list "SLUICE_API_KEY" "SLUICE_CONSOLE_READ_KEY" "SLUICE_CONSOLE_ADMIN_KEY" "SLUICE_KAFKA_SASL_PASSWORD" "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" "SLUICE_CATALOG_CREDENTIAL" "SLUICE_CATALOG_TOKEN" "SLUICE_SEARCH_PASSWORD" "SLUICE_SEARCH_API_KEY" }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ . }}
      optional: true
{{- end }}
{{- end }}

{{/* The pod spec's shared parts: security, volumes. */}}
{{- define "sluice.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{- define "sluice.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
{{- end }}

{{- define "sluice.volumeMounts" -}}
- name: config
  mountPath: /etc/sluice/sluice.yaml
  subPath: sluice.yaml
  readOnly: true
{{- if .Values.kafka.tlsCA }}
- name: secrets
  mountPath: /etc/sluice/secrets
  readOnly: true
{{- end }}
- name: data
  mountPath: /var/lib/sluice
- name: tmp
  mountPath: /tmp
{{- end }}

{{- define "sluice.volumes" -}}
- name: config
  configMap:
    name: {{ .Release.Name }}-config
{{- if .Values.kafka.tlsCA }}
- name: secrets
  secret:
    secretName: {{ include "sluice.secretName" . }}
    items:
      - key: kafka-ca.pem
        path: kafka-ca.pem
{{- end }}
- name: data
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- end }}

{{/* The pod template annotation that rolls every pod when the config changes. */}}
{{- define "sluice.checksum" -}}
checksum/config: {{ include (print .Template.BasePath "/config.yaml") . | sha256sum }}
{{- end }}

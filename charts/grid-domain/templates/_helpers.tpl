{{/* Names, labels and the pieces every template of grid-domain shares. */}}

{{- define "grid-domain.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "grid-domain.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "grid-domain.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "grid-domain.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "grid-domain.selector" -}}
app.kubernetes.io/name: {{ include "grid-domain.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "grid-domain.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The workers' image: the same repository, with workers.imageTag (a CUDA build) if set. */}}
{{- define "grid-domain.workerImage" -}}
{{- printf "%s:%s" .Values.image.repository (default (default .Chart.AppVersion .Values.image.tag) .Values.workers.imageTag) }}
{{- end }}

{{- define "grid-domain.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "grid-domain.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "grid-domain.keysSecret" -}}
{{- default (printf "%s-keys" (include "grid-domain.fullname" .)) .Values.keys.existingSecret }}
{{- end }}

{{- define "grid-domain.workerTokenSecret" -}}
{{- default (printf "%s-worker-token" (include "grid-domain.fullname" .)) .Values.workers.tokenSecret.name }}
{{- end }}

{{- define "grid-domain.nodeName" -}}
{{- default .Release.Name .Values.node.name }}
{{- end }}

{{/* Where GRID_DATABASE_URL comes from: [secret name, key]. */}}
{{- define "grid-domain.databaseSecret" -}}
{{- if and (eq .Values.database.type "external") .Values.database.external.existingSecret }}
{{- list .Values.database.external.existingSecret .Values.database.external.existingSecretKey | toJson }}
{{- else }}
{{- list (include "grid-domain.fullname" .) "database-url" | toJson }}
{{- end }}
{{- end }}

{{- define "grid-domain.chainSecret" -}}
{{- if .Values.chain.existingSecret }}
{{- list .Values.chain.existingSecret .Values.chain.existingSecretKey | toJson }}
{{- else }}
{{- list (include "grid-domain.fullname" .) "chain-rpc-url" | toJson }}
{{- end }}
{{- end }}

{{- define "grid-domain.chainEnabled" -}}
{{- if or .Values.chain.rpcUrl .Values.chain.existingSecret }}true{{- end }}
{{- end }}

{{- define "grid-domain.ownerSecret" -}}
{{- default (include "grid-domain.fullname" .) .Values.owner.existingSecret }}
{{- end }}

{{- define "grid-domain.ownerEnabled" -}}
{{- if or .Values.owner.existingSecret (and .Values.owner.email .Values.owner.password) }}true{{- end }}
{{- end }}

{{/* Writable places under a read-only root filesystem. */}}
{{- define "grid-domain.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end }}

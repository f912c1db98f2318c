{{/* Names, labels and the pieces every template of grid-network shares. */}}

{{- define "grid-network.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "grid-network.fullname" -}}
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

{{- define "grid-network.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "grid-network.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "grid-network.selector" -}}
app.kubernetes.io/name: {{ include "grid-network.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "grid-network.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "grid-network.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "grid-network.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "grid-network.keysSecret" -}}
{{- default (printf "%s-keys" (include "grid-network.fullname" .)) .Values.keys.existingSecret }}
{{- end }}

{{- define "grid-network.nodeName" -}}
{{- default .Release.Name .Values.node.name }}
{{- end }}

{{/* Where GRID_DATABASE_URL comes from: [secret name, key]. */}}
{{- define "grid-network.databaseSecret" -}}
{{- if and (eq .Values.database.type "external") .Values.database.external.existingSecret }}
{{- list .Values.database.external.existingSecret .Values.database.external.existingSecretKey | toJson }}
{{- else }}
{{- list (include "grid-network.fullname" .) "database-url" | toJson }}
{{- end }}
{{- end }}

{{- define "grid-network.operatorSecret" -}}
{{- default (include "grid-network.fullname" .) .Values.operator.existingSecret }}
{{- end }}

{{- define "grid-network.operatorEnabled" -}}
{{- if or .Values.operator.existingSecret (and .Values.operator.email .Values.operator.password) }}true{{- end }}
{{- end }}

{{/* Writable places under a read-only root filesystem. */}}
{{- define "grid-network.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end }}

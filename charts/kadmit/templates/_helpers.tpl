{{/* The release's full name: resources, the Service and the webhooks' names. */}}
{{- define "kadmit.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kadmit.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "kadmit.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kadmit.selectorLabels" -}}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kadmit.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kadmit.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the serving pair. */}}
{{- define "kadmit.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "secret" -}}
{{- required "certificates.secret.name is required when certificates.mode is secret" .Values.certificates.secret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "kadmit.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
Which policies the configuration enables, with kadmit's defaults for what it leaves out, as a
dict of booleans; templates choose webhooks and RBAC rules from it, so nothing is granted or
registered that no policy uses.
*/}}
{{- define "kadmit.policies" -}}
{{- $c := .Values.config -}}
{{- $ps := dig "podSecurity" "enabled" true $c -}}
{{- $gmsa := dig "gmsa" "enabled" true $c -}}
{{- $limitRanges := dig "defaultResources" "limitRanges" true $c -}}
{{- $resourceRules := gt (len (dig "defaultResources" "rules" list $c)) 0 -}}
{{- $pullRules := gt (len (dig "imagePullSecrets" "rules" list $c)) 0 -}}
{{- $watchSecrets := and $pullRules (dig "imagePullSecrets" "watchSecrets" false $c) -}}
{{- $securityDefaults := dig "securityDefaults" "enabled" false $c -}}
{{- $workloads := ne (dig "podSecurity" "workloads" "warn" $c) "ignore" -}}
podSecurity: {{ $ps }}
podSecurityWorkloads: {{ and $ps $workloads }}
gmsa: {{ $gmsa }}
limitRanges: {{ $limitRanges }}
watchSecrets: {{ $watchSecrets }}
mutating: {{ or $gmsa $limitRanges $resourceRules $pullRules $securityDefaults }}
validating: {{ or $ps $gmsa }}
{{- end -}}

{{/* The namespaceSelector every webhook gets: never kube-system, never kadmit's own namespace. */}}
{{- define "kadmit.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- range (concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces | uniq) }}
        - {{ . | quote }}
        {{- end }}
{{- with .Values.webhook.objectSelector }}
objectSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.webhook.matchConditions }}
matchConditions:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

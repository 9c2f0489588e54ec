{{/* Labels every object of the release carries. */}}
{{- define "palisade.labels" -}}
app.kubernetes.io/name: palisade
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* Selector labels of one component: call with (list $ "operator"). */}}
{{- define "palisade.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: palisade
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Image reference of one component: call with (list $ .Values.operator.image). */}}
{{- define "palisade.image" -}}
{{- $ := index . 0 -}}
{{- $img := index . 1 -}}
{{- with $.Values.image.registry }}{{ trimSuffix "/" . }}/{{ end }}{{ $img.repository }}:{{ $.Values.image.tag | default $.Chart.AppVersion }}
{{- end }}

{{/* The agent's ServiceAccount user name, as the API server authenticates it. */}}
{{- define "palisade.agentUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:palisade-agent
{{- end }}

{{/* The agent reads the node's audit records: for learning, for denials, or both. */}}
{{- define "palisade.readsAudit" -}}
{{- if or .Values.learning.enabled .Values.denials.enabled }}true{{ end }}
{{- end }}

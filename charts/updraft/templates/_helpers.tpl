{{/* Names, labels and the pieces every updraft pod shares: environment, volumes, security. */}}

{{- define "updraft.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "updraft.fullname" -}}
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

{{- define "updraft.selectorLabels" -}}
app.kubernetes.io/name: {{ include "updraft.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "updraft.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "updraft.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "updraft.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "updraft.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "updraft.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding the chart's credentials: existingSecret, else the chart's own (rendered
by the chart or by the ExternalSecret). */}}
{{- define "updraft.secretName" -}}
{{- default (include "updraft.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "updraft.rendersSecret" -}}
{{- if and (not .Values.existingSecret) (not .Values.externalSecrets.enabled) }}true{{ end }}
{{- end }}

{{- define "updraft.postgres" -}}
{{- if not .Values.standalone.enabled }}true{{ end }}
{{- end }}

{{/* secretKeyRef of the database URL; `.pooled` picks the URL through PgBouncer. */}}
{{- define "updraft.databaseUrlRef" -}}
{{- $root := .root }}
{{- $pooled := and .pooled $root.Values.pgbouncer.enabled }}
{{- if $root.Values.database.existingSecret }}
name: {{ $root.Values.database.existingSecret }}
key: {{ ternary $root.Values.database.existingSecretPooledKey $root.Values.database.existingSecretKey $pooled }}
{{- else }}
name: {{ include "updraft.secretName" $root }}
key: {{ ternary "database-pooled-url" "database-url" $pooled }}
{{- end }}
{{- end }}

{{/* The URL through PgBouncer: the direct URL with the PgBouncer Service as its host. */}}
{{- define "updraft.pooledUrl" -}}
{{- $u := urlParse .Values.database.url }}
{{- $host := printf "%s-pgbouncer:%d" (include "updraft.fullname" .) (int .Values.pgbouncer.port) }}
{{- urlJoin (dict "scheme" $u.scheme "userinfo" $u.userinfo "host" $host "path" $u.path "query" $u.query) }}
{{- end }}

{{/* Environment of the scheduler, server and standalone containers: home, and every secret
setting from Secrets. `.component` is the container's component. */}}
{{- define "updraft.env" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
- name: UPDRAFT_HOME
  value: {{ $v.home | quote }}
{{- if include "updraft.postgres" $root }}
- name: UPDRAFT__DATABASE__URL
  valueFrom:
    secretKeyRef:
      {{- include "updraft.databaseUrlRef" (dict "root" $root "pooled" true) | nindent 6 }}
{{- end }}
- name: UPDRAFT__CORE__FERNET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ default (include "updraft.secretName" $root) $v.fernetKeyExistingSecret }}
      key: {{ ternary $v.fernetKeyExistingSecretKey "fernet-key" (not (empty $v.fernetKeyExistingSecret)) }}
- name: UPDRAFT__AUTH__SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ default (include "updraft.secretName" $root) $v.jwtSecretExistingSecret }}
      key: {{ ternary $v.jwtSecretExistingSecretKey "jwt-secret" (not (empty $v.jwtSecretExistingSecret)) }}
{{- if and $v.auth.oidc.enabled (or $v.auth.oidc.clientSecret $v.auth.oidc.clientSecretExistingSecret (not (include "updraft.rendersSecret" $root))) }}
- name: UPDRAFT__AUTH__OIDC__CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ default (include "updraft.secretName" $root) $v.auth.oidc.clientSecretExistingSecret }}
      key: {{ ternary $v.auth.oidc.clientSecretExistingSecretKey "oidc-client-secret" (not (empty $v.auth.oidc.clientSecretExistingSecret)) }}
{{- end }}
{{- with $v.env }}
{{ toYaml . }}
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volume mounts of the scheduler, server and standalone containers. */}}
{{- define "updraft.volumeMounts" -}}
{{- $v := .root.Values }}
- name: home
  mountPath: {{ $v.home }}
- name: config
  mountPath: {{ printf "%s/updraft.toml" $v.home }}
  subPath: updraft.toml
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if and $v.dags.persistence.enabled (not $v.standalone.enabled) }}
- name: dags
  mountPath: {{ printf "%s/dags" $v.home }}
{{- end }}
{{- if and $v.logs.persistence.enabled (not $v.standalone.enabled) }}
- name: logs
  mountPath: {{ printf "%s/logs" $v.home }}
{{- end }}
{{- if include "updraft.sourceFiles" .root }}
- name: sources
  mountPath: /var/run/secrets/updraft/sources
  readOnly: true
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes of the scheduler, server and standalone pods; `.home` is the home volume's source. */}}
{{- define "updraft.volumes" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
- name: home
  {{- toYaml .home | nindent 2 }}
- name: config
  configMap:
    name: {{ include "updraft.fullname" $root }}
- name: tmp
  emptyDir: {}
{{- if and $v.dags.persistence.enabled (not $v.standalone.enabled) }}
- name: dags
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-dags" (include "updraft.fullname" $root)) $v.dags.persistence.existingClaim }}
{{- end }}
{{- if and $v.logs.persistence.enabled (not $v.standalone.enabled) }}
- name: logs
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-logs" (include "updraft.fullname" $root)) $v.logs.persistence.existingClaim }}
{{- end }}
{{- if include "updraft.sourceFiles" $root }}
- name: sources
  projected:
    defaultMode: 0440
    sources:
      {{- include "updraft.sourceFiles" $root | nindent 6 }}
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The projected volume's sources: each DAG source's secrets and known_hosts as files under
/var/run/secrets/updraft/sources/<name>/. */}}
{{- define "updraft.sourceFiles" -}}
{{- $root := . }}
{{- range $s := .Values.sources }}
{{- range $field, $file := dict "tokenSecret" "token" "sshKeySecret" "ssh-key" "knownHostsSecret" "known_hosts" "webhookSecret" "webhook-secret" }}
{{- with (get $s $field) }}
- secret:
    name: {{ .name }}
    items:
      - key: {{ .key }}
        path: {{ printf "%s/%s" $s.name $file }}
{{- end }}
{{- end }}
{{- if $s.knownHosts }}
- configMap:
    name: {{ include "updraft.fullname" $root }}
    items:
      - key: {{ printf "known-hosts-%s" $s.name }}
        path: {{ printf "%s/known_hosts" $s.name }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by every pod of the chart. */}}
{{- define "updraft.podCommon" -}}
{{- $v := .root.Values }}
{{- with $v.image.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with .c.extraInitContainers }}
initContainers:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Labels of the pods of one component, with Azure's workload identity label when set. */}}
{{- define "updraft.podLabels" -}}
{{ include "updraft.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- if .root.Values.workloadIdentity.azureClientId }}
azure.workload.identity/use: "true"
{{- end }}
{{- with .c.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Annotations of the pods that read updraft.toml: they roll when it changes. */}}
{{- define "updraft.podAnnotations" -}}
checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
{{- with .c.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "updraft.container" -}}
image: {{ include "updraft.image" .root }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
{{- with .root.Values.envFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.securityContext | nindent 2 }}
{{- with .c.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Whole numbers in a map of values as integers, recursively: values arrive as floats, and
updraft.toml must say `5`, not `5.0`, for integer settings. */}}
{{- define "updraft.wholeNumbers" -}}
{{- range $k, $val := . }}
{{- if kindIs "float64" $val }}
{{- if eq $val (float64 (int64 $val)) }}{{ $_ := set $ $k (int64 $val) }}{{ end }}
{{- else if kindIs "map" $val }}
{{- include "updraft.wholeNumbers" $val }}
{{- end }}
{{- end }}
{{- end }}

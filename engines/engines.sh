#!/usr/bin/env bash
# Beam engines on this machine: a Flink session cluster and a Spark standalone cluster, each behind Beam's
# job server, with an SDK worker pool (--environment_type=EXTERNAL); Java parts from Maven Central.
#
#   engines/engines.sh fetch                      resolve the jars (engines/versions.env) into the cache
#   engines/engines.sh up [flink|spark|all] [--workers N]   start (N TaskManagers / Spark workers, default 2)
#   engines/engines.sh down [flink|spark|all]     stop what `up` started, by the PIDs it recorded
#   engines/engines.sh status                     the engines' processes and their memory
#   engines/engines.sh args flink|spark           the beam_pipeline_args that run on an engine (one per line)
#   engines/engines.sh exec -- CMD...             run CMD where the engines are reachable
#   engines/engines.sh crds                       re-vendor the operators' CRDs into tests/schemas/ (gzipped)
#   engines/engines.sh boot DIR                   build Beam's Python SDK boot binary into DIR (Go module proxy)
#
# Everything runs in a network namespace of its own ($KUBETFX_ENGINES_NETNS) that has only the loopback
# interface: Beam's Java gRPC servers (job, artifact and the TaskManagers'/executors' Fn API servers) bind
# every interface whatever --job-host says; inside that namespace every interface is 127.0.0.1, and no
# packet can leave it. Clients (tests, Transform, the Evaluator) run inside it through `exec`.
# Downloads: $KUBETFX_CACHE (default ~/.cache/kubetfx/engines). Configs, logs, PIDs: build/engines/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
set -a; . "$ROOT/engines/versions.env"; set +a
CACHE=${KUBETFX_CACHE:-$HOME/.cache/kubetfx/engines}
STATE=${KUBETFX_ENGINES_STATE:-$ROOT/build/engines}
NETNS=${KUBETFX_ENGINES_NETNS:-kubetfx-engines}
PY=${KUBETFX_PYTHON:-$ROOT/.venv/bin/python}
FLINK_REST=8081 FLINK_RPC=6123 FLINK_JOB=8099 FLINK_ARTIFACT=8098 FLINK_EXPANSION=8097 FLINK_POOL=50000
SPARK_MASTER=7077 SPARK_MASTER_UI=8080 SPARK_JOB=8199 SPARK_ARTIFACT=8198 SPARK_EXPANSION=8197 SPARK_POOL=50001
# Keep a TaskManager's / executor's SDK workers for the job's next stage (Beam's default, 0, stops them after
# every stage: a new worker, with its imports, per stage).
ENVIRONMENT_CACHE=--environment_cache_millis=30000
# What Flink's own scripts pass to a JVM on Java 17 (its default config's env.java.opts.all); Spark needs them too.
JAVA_OPENS="--add-exports=java.base/sun.net.util=ALL-UNNAMED --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
 --add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED
 --add-opens=java.base/java.lang.invoke=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED
 --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED
 --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/sun.nio.cs=ALL-UNNAMED
 --add-opens=java.base/sun.security.action=ALL-UNNAMED --add-opens=java.base/sun.util.calendar=ALL-UNNAMED
 --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/java.text=ALL-UNNAMED
 --add-opens=java.base/java.time=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED
 --add-opens=java.base/java.util.concurrent=ALL-UNNAMED --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
 --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED"

say() { echo "engines: $*"; }
die() { echo "engines: $*" >&2; exit 1; }
bad() { echo "engines: $*" >&2; exit 2; }  # a bad argument: one line, exit 2
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# --------------------------------------------------------------------------- downloads

# A key of the pins: a version bump resolves again, into new files.
pin_key() { cat "$ROOT/engines/versions.env" "$ROOT/engines/pom.xml" | sha256sum | cut -c1-12; }
classpath_file() { echo "$CACHE/classpath/$1-$(pin_key).txt"; }

resolve() {  # resolve <profile>: the profile's runtime classpath, from Maven Central into $CACHE/m2
  local file; file=$(classpath_file "$1")
  [ -s "$file" ] && return 0
  command -v mvn >/dev/null || die "mvn not found: the engines' jars come from Maven Central (apt-get install -y maven)"
  command -v java >/dev/null || die "java not found: the engines need Java 17 (apt-get install -y openjdk-17-jre-headless)"
  mkdir -p "$(dirname "$file")"
  say "resolving $1 from Maven Central into $CACHE/m2"
  mvn -B -q -f "$ROOT/engines/pom.xml" -P "$1" -Dmaven.repo.local="$CACHE/m2" \
    -Dbeam.version="$BEAM_JAVA_VERSION" -Dflink.minor="$FLINK_MINOR" -Dflink.version="$FLINK_VERSION" \
    -Dspark.version="$SPARK_VERSION" -Dscala.binary.version="$SCALA_BINARY_VERSION" \
    -Dslf4j.version="$SLF4J_VERSION" -Dspark.slf4j.version="$SPARK_SLF4J_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
    dependency:build-classpath -Dmdep.outputFile="$file.tmp" >"$file.log" 2>&1 \
    || { tail -n 20 "$file.log" >&2; rm -f "$file.tmp"; die "could not resolve $1 (log: $file.log)"; }
  mv "$file.tmp" "$file"
}

# jars <profile> <dir>: hard links to the profile's jars in <dir> (no copies, no symlinks to resolve).
link_jars() {
  [ -d "$2" ] && return 0
  mkdir -p "$2.tmp"
  tr ':' '\n' <"$(classpath_file "$1")" | while read -r jar || [ -n "$jar" ]; do ln -f "$jar" "$2.tmp/" 2>/dev/null || cp "$jar" "$2.tmp/"; done
  mv "$2.tmp" "$2"
}

# A job server's classpath. Beam stages every jar of it to the cluster with each job (Flink: uploaded to
# the JobManager's blob server, 151 MB, ~15 s a job here; Spark: spark.jars), except paths that contain
# "gradle/wrapper" (PipelineResources.isStageable, meant for Gradle's wrapper jar). The clusters have
# Beam's runner on their own classpath (engines/pom.xml), so the job servers' jars live under such a path.
job_server_classpath() {
  local dir; dir="$CACHE/lib-$(pin_key)/$1/gradle/wrapper"
  link_jars "$1" "$dir"
  echo "$dir/*"
}

# Spark's Worker starts executors with $SPARK_HOME/jars/* on the classpath: a SPARK_HOME with those jars.
spark_home() {
  local home; home="$CACHE/lib-$(pin_key)/spark-$SPARK_VERSION"
  mkdir -p "$home/conf"
  link_jars spark-cluster "$home/jars"
  echo "$home"
}

fetch() {
  for profile in flink-cluster flink-job-server spark-cluster spark-job-server; do resolve "$profile"; done
  spark_home >/dev/null; job_server_classpath flink-job-server >/dev/null; job_server_classpath spark-job-server >/dev/null
}

# --------------------------------------------------------------------------- CRDs and the boot binary

go_env() { env GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/mod" GOFLAGS=-mod=mod "$@"; }

vendor_crd() {  # vendor_crd <source file> <tests/schemas/dir>: gzipped, reproducibly (gzip -n)
  mkdir -p "$ROOT/$2"
  gzip -9 -n -c "$1" >"$ROOT/$2/$(basename "$1").gz"
  say "vendored $(basename "$1") into $2 (sha256 of the original: $(sha256sum <"$1" | cut -c1-64))"
}

crds() {
  command -v go >/dev/null || die "go not found: the TFJob CRD comes from a Go module"
  local tmp jar dir
  tmp=$(mktemp -d)
  mvn -B -q dependency:copy -Dmaven.repo.local="$CACHE/m2" -DoutputDirectory="$tmp" \
    -Dartifact="org.apache.flink:flink-kubernetes-operator-api:$FLINK_OPERATOR_VERSION" >/dev/null
  jar=$(ls "$tmp"/flink-kubernetes-operator-api-*.jar)
  (cd "$tmp" && unzip -q -o "$jar" 'META-INF/fabric8/flinkdeployments.flink.apache.org-v1.yml')
  vendor_crd "$tmp/META-INF/fabric8/flinkdeployments.flink.apache.org-v1.yml" tests/schemas/flink-operator
  dir=$(cd "$tmp" && go_env go mod download -json "github.com/kubeflow/training-operator@$TRAINING_OPERATOR_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || die "the Go module proxy did not serve github.com/kubeflow/training-operator@$TRAINING_OPERATOR_VERSION"
  vendor_crd "$dir/manifests/base/crds/kubeflow.org_tfjobs.yaml" tests/schemas/training-operator
  rm -rf "$tmp"
}

boot() {  # boot <dir>: Beam's Python SDK boot binary (static, linux) as <dir>/boot
  command -v go >/dev/null || die "go not found: Beam's boot binary is built from its Go module"
  mkdir -p "$1"
  go_env GOBIN="$CACHE/bin/$BEAM_BOOT_VERSION" CGO_ENABLED=0 \
    go install "github.com/apache/beam/sdks/v2/python/container@$BEAM_BOOT_VERSION"
  cp "$CACHE/bin/$BEAM_BOOT_VERSION/container" "$1/boot"
  say "built Beam's Python SDK boot $BEAM_BOOT_VERSION: $1/boot"
}

# --------------------------------------------------------------------------- processes

in_ns() { ip netns exec "$NETNS" "$@"; }

ensure_netns() {
  [ "$(id -u)" = 0 ] || die "the engines run in a private network namespace: run as root (ip netns)"
  if ! ip netns list | grep -qw "$NETNS"; then
    ip netns add "$NETNS"
    in_ns ip link set lo up
  fi
}

# start <engine> <name> <log> CMD...: start CMD detached in the namespace and record its PID.
start() {
  local engine=$1 name=$2 log=$3; shift 3
  setsid ip netns exec "$NETNS" "$@" >"$log" 2>&1 </dev/null &
  echo "$!" >"$STATE/$engine/pids/$name"
}

port_open() { in_ns bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

wait_for() {  # wait_for <what> <seconds> <engine> CMD...: until CMD succeeds; fails early when a process died
  local what=$1 seconds=$2 engine=$3; shift 3
  local deadline=$(( $(date +%s) + seconds ))
  until "$@"; do
    for pidfile in "$STATE/$engine"/pids/*; do
      kill -0 "$(cat "$pidfile")" 2>/dev/null || die "$engine: $(basename "$pidfile") exited while waiting for $what " \
        "(logs: $STATE/$engine/logs/$(basename "$pidfile").log)"
    done
    [ "$(date +%s)" -lt "$deadline" ] || die "$engine: no $what after ${seconds} s (logs: $STATE/$engine/logs/)"
    sleep 0.5
  done
}

pool_up() {  # pool_up <engine> <port>: the SDK worker pool; workers are `python` from the venv
  [ -x "$PY" ] || die "no Python at $PY: run make install (the SDK workers need kubetfx, TFT and TFMA)"
  start "$1" worker-pool "$STATE/$1/logs/worker-pool.log" \
    env PATH="$(dirname "$PY"):$PATH" "$PY" "$ROOT/engines/worker_pool.py" --port "$2"
}

flink_conf() {  # the session cluster's config: loopback only, one slot per TaskManager
  local conf=$STATE/flink/conf
  mkdir -p "$conf" "$STATE/flink/tmp"
  cat >"$conf/config.yaml" <<EOF
jobmanager.rpc.address: 127.0.0.1
jobmanager.rpc.port: $FLINK_RPC
jobmanager.bind-host: 127.0.0.1
rest.address: 127.0.0.1
rest.bind-address: 127.0.0.1
rest.port: $FLINK_REST
taskmanager.bind-host: 127.0.0.1
taskmanager.host: 127.0.0.1
taskmanager.numberOfTaskSlots: 1
parallelism.default: 1
jobmanager.memory.process.size: 1024m
taskmanager.memory.process.size: 2304m
# Beam's Fn API data plane (gRPC) buffers in direct memory: with 1 TaskManager, Transform on 1M rows failed
# with "OutOfMemoryError: Direct buffer memory" (task off-heap is 0 by default).
taskmanager.memory.task.off-heap.size: 256m
# A Beam batch job runs all its operators in one slot at once, each result partition taking
# sort-shuffle.min-buffers network buffers (default 512 = 16 MB): Transform needed more than 5079 buffers.
taskmanager.memory.network.min: 384m
taskmanager.memory.network.max: 384m
taskmanager.network.sort-shuffle.min-buffers: 128
io.tmp.dirs: $STATE/flink/tmp
# Beam's runner is on the cluster's classpath (engines/pom.xml): load it from there, not from the job's jars.
classloader.resolve-order: parent-first
EOF
  cat >"$conf/log4j.properties" <<'EOF'
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = MainAppender
appender.main.name = MainAppender
appender.main.type = File
appender.main.fileName = ${sys:log.file}
appender.main.layout.type = PatternLayout
appender.main.layout.pattern = %d{HH:mm:ss,SSS} %-5p %-60c %x - %m%n
EOF
}

flink_memory() {  # flink_memory JM|TM: the JVM flags and -D settings Flink's scripts compute (BashJavaUtils)
  java -cp "$(cat "$(classpath_file flink-cluster)")" org.apache.flink.runtime.util.bash.BashJavaUtils \
    "GET_$1_RESOURCE_PARAMS" --configDir "$STATE/flink/conf" 2>&1 | sed -n 's/^BASH_JAVA_UTILS_EXEC_RESULT://p'
}

flink_taskmanagers() { in_ns curl -sf "http://127.0.0.1:$FLINK_REST/taskmanagers" | grep -o '"slotsNumber"' | wc -l; }

flink_up() {
  local workers=$1 cp jm tm i
  cp=$(cat "$(classpath_file flink-cluster)")
  flink_conf
  jm=$(flink_memory JM); tm=$(flink_memory TM)
  local log4j="-Dlog4j.configurationFile=file:$STATE/flink/conf/log4j.properties"
  # shellcheck disable=SC2086 # the flag lists are meant to split
  start flink jobmanager "$STATE/flink/logs/jobmanager.out" java $(echo "$jm" | sed -n 1p) $JAVA_OPENS \
    -Dlog.file="$STATE/flink/logs/jobmanager.log" "$log4j" -cp "$cp" \
    org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint --configDir "$STATE/flink/conf" \
    $(echo "$jm" | sed -n 2p)
  wait_for "Flink REST endpoint on 127.0.0.1:$FLINK_REST" 90 flink port_open "$FLINK_REST"
  for i in $(seq 1 "$workers"); do
    # shellcheck disable=SC2086
    start flink "taskmanager-$i" "$STATE/flink/logs/taskmanager-$i.out" java $(echo "$tm" | sed -n 1p) $JAVA_OPENS \
      -Dlog.file="$STATE/flink/logs/taskmanager-$i.log" "$log4j" -cp "$cp" \
      org.apache.flink.runtime.taskexecutor.TaskManagerRunner --configDir "$STATE/flink/conf" $(echo "$tm" | sed -n 2p)
  done
  wait_for "$workers TaskManagers registered" 120 flink test_count flink_taskmanagers "$workers"
  pool_up flink "$FLINK_POOL"
  # shellcheck disable=SC2086
  start flink job-server "$STATE/flink/logs/job-server.log" java -Xmx1g $JAVA_OPENS \
    -cp "$(job_server_classpath flink-job-server)" org.apache.beam.runners.flink.FlinkJobServerDriver \
    --flink-master="127.0.0.1:$FLINK_REST" --job-host=127.0.0.1 --job-port="$FLINK_JOB" \
    --artifact-port="$FLINK_ARTIFACT" --expansion-port="$FLINK_EXPANSION" --artifacts-dir="$STATE/flink/artifacts" \
    --clean-artifacts-per-job
  wait_for "Beam's Flink job server on 127.0.0.1:$FLINK_JOB" 90 flink port_open "$FLINK_JOB"
  wait_for "the SDK worker pool on 127.0.0.1:$FLINK_POOL" 60 flink port_open "$FLINK_POOL"
  printf '%s\n' --runner=PortableRunner "--job_endpoint=127.0.0.1:$FLINK_JOB" --environment_type=EXTERNAL \
    "--environment_config=127.0.0.1:$FLINK_POOL" "--parallelism=$workers" "$ENVIRONMENT_CACHE" >"$STATE/flink/beam_args"
}

spark_workers() { in_ns curl -sf "http://127.0.0.1:$SPARK_MASTER_UI/json/" | grep -o '"state" *: *"ALIVE"' | wc -l; }
test_count() { [ "$("$1")" -ge "$2" ]; }

spark_up() {
  local workers=$1 home cp i
  home=$(spark_home)
  cp="$home/conf:$home/jars/*"
  mkdir -p "$STATE/spark/work" "$STATE/spark/tmp" "$STATE/spark/events"
  local env=(env SPARK_HOME="$home" SPARK_SCALA_VERSION="$SCALA_BINARY_VERSION" SPARK_LOCAL_IP=127.0.0.1
             SPARK_LOCAL_DIRS="$STATE/spark/tmp" SPARK_LOG_DIR="$STATE/spark/logs")
  # shellcheck disable=SC2086
  start spark master "$STATE/spark/logs/master.log" "${env[@]}" java -Xmx512m $JAVA_OPENS -cp "$cp" \
    org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$SPARK_MASTER" --webui-port "$SPARK_MASTER_UI"
  wait_for "Spark master on 127.0.0.1:$SPARK_MASTER" 90 spark port_open "$SPARK_MASTER"
  for i in $(seq 1 "$workers"); do
    # shellcheck disable=SC2086
    start spark "worker-$i" "$STATE/spark/logs/worker-$i.log" "${env[@]}" java -Xmx512m $JAVA_OPENS -cp "$cp" \
      org.apache.spark.deploy.worker.Worker "spark://127.0.0.1:$SPARK_MASTER" --host 127.0.0.1 --cores 1 \
      --memory 2g --webui-port 0 --work-dir "$STATE/spark/work"
  done
  wait_for "$workers Spark workers registered" 120 spark test_count spark_workers "$workers"
  pool_up spark "$SPARK_POOL"
  # The job server is the Spark driver: Spark settings as system properties (SparkConf reads spark.*).
  # shellcheck disable=SC2086
  start spark job-server "$STATE/spark/logs/job-server.log" "${env[@]}" java -Xmx1536m $JAVA_OPENS \
    -Dspark.driver.host=127.0.0.1 -Dspark.driver.bindAddress=127.0.0.1 -Dspark.ui.enabled=false \
    -Dspark.executor.memory=1536m -Dspark.executor.cores=1 -Dspark.local.dir="$STATE/spark/tmp" \
    -Dspark.eventLog.enabled=true -Dspark.eventLog.dir="file://$STATE/spark/events" \
    -cp "$(job_server_classpath spark-job-server)" org.apache.beam.runners.spark.SparkJobServerDriver \
    --spark-master-url="spark://127.0.0.1:$SPARK_MASTER" --job-host=127.0.0.1 --job-port="$SPARK_JOB" \
    --artifact-port="$SPARK_ARTIFACT" --expansion-port="$SPARK_EXPANSION" --artifacts-dir="$STATE/spark/artifacts" \
    --clean-artifacts-per-job
  wait_for "Beam's Spark job server on 127.0.0.1:$SPARK_JOB" 90 spark port_open "$SPARK_JOB"
  wait_for "the SDK worker pool on 127.0.0.1:$SPARK_POOL" 60 spark port_open "$SPARK_POOL"
  printf '%s\n' --runner=PortableRunner "--job_endpoint=127.0.0.1:$SPARK_JOB" --environment_type=EXTERNAL \
    "--environment_config=127.0.0.1:$SPARK_POOL" "$ENVIRONMENT_CACHE" >"$STATE/spark/beam_args"
}

running() { [ -d "$STATE/$1/pids" ] && [ -n "$(ls -A "$STATE/$1/pids" 2>/dev/null)" ]; }

up() {
  local engine=$1 workers=$2
  if running "$engine"; then say "$engine is up already (engines/engines.sh down $engine first)"; return 0; fi
  fetch
  command -v curl >/dev/null || die "curl not found (apt-get install -y curl)"
  ensure_netns
  rm -rf "${STATE:?}/$engine"
  mkdir -p "$STATE/$engine/pids" "$STATE/$engine/logs"
  local started; started=$(date +%s%3N)
  if ! "${engine}_up" "$workers"; then down "$engine"; exit 1; fi
  echo "$workers" >"$STATE/$engine/workers"
  say "$engine up with $workers worker(s) in $(( ($(date +%s%3N) - started) / 1000 )).$(( ($(date +%s%3N) - started) % 1000 / 100 )) s;" \
      "beam_pipeline_args: $(tr '\n' ' ' <"$STATE/$engine/beam_args")"
}

down() {
  local engine=$1 pidfile pid names
  running "$engine" || return 0
  # The job server first (it cancels its jobs), then the pool, the workers, the master.
  names=$(ls "$STATE/$engine/pids" | sort -r | awk '/^job-server/{print 1, $0; next} /^worker-pool/{print 2, $0; next}
          /^(taskmanager|worker)-/{print 3, $0; next} {print 4, $0}' | sort -n | cut -d' ' -f2)
  for name in $names; do
    pidfile="$STATE/$engine/pids/$name"; pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && { say "$engine: $name ($pid) ignored SIGTERM: SIGKILL"; kill -KILL "$pid"; }
    fi
    rm -f "$pidfile"
  done
  say "$engine down"
  if ! running flink && ! running spark && ip netns list | grep -qw "$NETNS"; then ip netns del "$NETNS"; fi
}

status() {
  local engine pidfile pid
  for engine in flink spark; do
    running "$engine" || { echo "$engine: down"; continue; }
    echo "$engine: $(cat "$STATE/$engine/workers" 2>/dev/null || echo '?') worker(s)"
    for pidfile in "$STATE/$engine"/pids/*; do
      pid=$(cat "$pidfile")
      if kill -0 "$pid" 2>/dev/null; then
        printf '  %-14s pid %-7s RSS %6d MB\n' "$(basename "$pidfile")" "$pid" "$(( $(awk '/VmRSS/{print $2}' "/proc/$pid/status") / 1024 ))"
        # the SDK workers (Python processes the pool started) and Spark's executors (the workers' children)
        { ps -o pid=,rss= --ppid "$pid" 2>/dev/null || true; } | while read -r child rss; do
          printf '    %-12s pid %-7s RSS %6d MB\n' "$(tr '\0' ' ' <"/proc/$child/cmdline" 2>/dev/null |
            grep -q CoarseGrainedExecutorBackend && echo executor || echo sdk-worker)" "$child" "$((rss / 1024))"
        done
      else
        printf '  %-14s pid %-7s EXITED\n' "$(basename "$pidfile")" "$pid"
      fi
    done
  done
}

engines_of() {  # engines_of <command> [flink|spark|all]
  case "${2:-all}" in flink|spark) echo "$2" ;; all) echo "flink spark" ;; *) bad "$1: expected flink, spark or all, got '$2'" ;; esac
}

command=${1:-}; [ $# -gt 0 ] && shift
case "$command" in
  fetch) fetch ;;
  up)
    target=all workers=${KUBETFX_ENGINE_WORKERS:-2}
    while [ $# -gt 0 ]; do
      case "$1" in
        flink|spark|all) target=$1 ;;
        --workers) [ $# -ge 2 ] || bad "up: --workers needs a number"; workers=$2; shift ;;
        --workers=*) workers=${1#--workers=} ;;
        *) bad "up: unknown argument '$1' (flink, spark, all, --workers N)" ;;
      esac
      shift
    done
    [[ "$workers" =~ ^[1-9][0-9]*$ ]] || bad "up: --workers: expected a whole number >= 1, got '$workers'"
    selected=$(engines_of up "$target") || exit 2
    for engine in $selected; do up "$engine" "$workers"; done ;;
  down) selected=$(engines_of down "${1:-all}") || exit 2; for engine in $selected; do down "$engine"; done ;;
  status) status ;;
  crds) crds ;;
  boot) [ $# -eq 1 ] || bad "boot: expected one directory to build into"; boot "$1" ;;
  args)
    case "${1:-}" in flink|spark) ;; *) bad "args: expected flink or spark, got '${1:-}'" ;; esac
    running "$1" || die "$1 is not up: engines/engines.sh up $1"
    cat "$STATE/$1/beam_args" ;;
  exec)
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || bad "exec: expected a command after --"
    ip netns list | grep -qw "$NETNS" || die "no engine is up (engines/engines.sh up)"
    exec ip netns exec "$NETNS" "$@" ;;
  "") usage ;;
  *) bad "unknown command '$command' (fetch, up, down, status, args, exec, crds, boot: see engines/engines.sh)" ;;
esac

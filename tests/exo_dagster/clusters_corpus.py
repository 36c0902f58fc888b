"""Generated cluster files for deployment-shape tests: many clusters from several teams in one
location, together using every feature (each trigger, failure and logs sections, fan-out, skip-when-empty, GPU
resources, each executor), with the same step identifiers in every cluster so any name a cluster
generates that is not its own clashes."""

from __future__ import annotations

from pathlib import Path

TRIGGERS = [
    "",
    '  trigger: {{cron: "0 * * * *", timezone: Europe/Berlin}}\n',
    "  trigger: {{files: {{path: inbox{i}, pattern: '*.csv'}}}}\n",
    "  trigger: {{after: cluster/team{prev_team}/c{prev}}}\n",
]
EXECUTORS = [
    "",
    "  executor: local\n",
    "  executor: in-process\n",
    "  executor: celery\n  queues: {{gpu: gpu{i}, cpu: cpu{i}}}\n",
    "  executor: k8s\n",
]

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: team{team}/c{i}
  title: Generated cluster {i}
  sla: 6h
  retries: {retries}
{trigger}{executor}{execution}  secrets:
    - HOOK: ${{{{ env.EXO_GEN_HOOK }}}}
  satellites:
    - name: Rows
      uses: satellite/exospherehost/sql
      identifier: rows
      config: {{query: "select i, 'w' || i as word from range(5) t(i)"}}
    - name: Embed
      uses: satellite/exospherehost/call-webhook
      identifier: embed
{fan_out}{resources}      config: {{url: "http://127.0.0.1:9/rows", mode: per-row}}
      input: {{word: "$${{{{ satellites.rows.output.word }}}}"}}
    - name: Total
      uses: satellite/exospherehost/sql
      identifier: total
{skip}      config: {{query: "select count(*) as n from rows"}}
{sections}"""

FAILURE = """\
  failure:
    from: embed
    satellites:
      - name: Alert
        uses: satellite/exospherehost/send-alert
        identifier: alert
        config:
          format: slack
          text: "${{ failure.step }}: ${{ failure.error }}"
          secrets: [{WEBHOOK_URL: "${{ secrets.HOOK }}"}]
"""

LOGS = """\
  logs:
    level: WARNING
    satellites:
      - name: Ship
        uses: satellite/exospherehost/forward-logs
        identifier: ship
        config: {url: "http://127.0.0.1:9/logs"}
"""


def cluster_text(i: int) -> str:
    team, prev = i % 5, i - 1
    trigger = TRIGGERS[i % len(TRIGGERS)]
    sections = (FAILURE if i % 2 == 0 else "") + (LOGS if i % 3 != 1 else "")
    return CLUSTER.format(
        team=team,
        i=i,
        retries=i % 4,
        trigger=trigger.format(i=i, prev=prev, prev_team=prev % 5),
        executor=EXECUTORS[i % len(EXECUTORS)].format(i=i),
        execution="  execution: dataflow\n" if i % 7 == 3 else "",
        fan_out="      fan-out: {chunk-rows: 2}\n" if i % 4 == 1 else "",
        resources="      resources: {gpu: 1, gpu-type: a100, cpu: 2, memory: 4Gi}\n" if i % 3 == 0 else "",
        sections=sections,
        skip="      skip-when-empty: true\n" if i % 5 == 2 else "",
    )


def write_corpus(folder: Path, count: int = 50) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        path = folder / f"c{i:02d}.yaml"
        path.write_text(cluster_text(i))
        files.append(path)
    return files

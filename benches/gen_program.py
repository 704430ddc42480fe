#!/usr/bin/env python3
"""Prints a valid .flow program of about N lines (default 10,000).

Each block is a type, a webhook flow that fans out over a list with a
match, a step with retries and interpolation, and a sync flow that
responds: the checker's common paths, repeated."""
import sys

target = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
out = [
    "/// Generated for the `flowc check` benchmark.",
    "integration bench_program",
    "",
    "config {",
    "  /// Where updates go.",
    "  erp_url: Url",
    "  erp_token: Secret",
    "  batch_size: Int = 100",
    "}",
    "",
]
i = 0
while len(out) < target:
    out += f"""/// Item {i}.
type Update{i} {{
  item: String
  action: "add" | "remove"
  quantity: Int
  note: String?
}}

/// Receives updates of kind {i}.
flow stock_{i} {{
  trigger webhook POST "/inventory/{i}" {{ body: [Update{i}], auth: none }}
  for update in trigger.body {{
    let delta = match update.action {{
      "add" => update.quantity
      "remove" => -update.quantity
    }}
    let label = "${{update.item}}-${{update.note ?? "none"}}"
    if delta != 0 and config.batch_size > 0 {{
      step adjust = http.post("${{config.erp_url}}/stock/${{update.item}}",
        json: {{ delta: delta, label: label }},
        bearer: config.erp_token,
      ) retry 5 backoff 1s..2m
    }}
  }}
}}

flow lookup_{i} {{
  trigger sync GET "/lookup/{i}/{{id}}" timeout 5s {{ auth: none }}
  step found = http.get("${{config.erp_url}}/items/${{trigger.params.id}}", ok: [404])
  if found.status == 404 {{ respond 404, {{ error: "not found" }} }}
  respond 200, {{ id: trigger.params.id, total: [1, 2, 3].map(x => x * 2).sum() }}
}}

""".splitlines()
    i += 1
print("\n".join(out))

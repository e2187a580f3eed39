// Reads the results that run.sh left in its work directory and prints one
// line per scenario and mode, the failed checks of every failing scenario, and
// a closing "conformance: N passed, N failed, N skipped" line.
// Exit status: 0 when nothing failed unexpectedly, 1 otherwise.
//
//   node summary.mjs WORKDIR
//
// WORKDIR holds:
//   scenarios.txt             the suite's server scenarios, one per line
//   policy.tsv                mode \t scenario \t exclude|xfail \t reason
//   modes.txt                 the modes that were run, one per line
//   <mode>/results/**/checks.json   written by the conformance CLI (-o)
//   <mode>/status.tsv         scenario \t exit code of the CLI, when run alone
//                             (absent for a mode run as one --suite all)
//   <mode>/suite.rc           exit code of a --suite all run
import { readFileSync, readdirSync, existsSync, statSync } from "node:fs";
import { join, basename } from "node:path";

const work = process.argv[2];
if (!work) {
  console.error("usage: node summary.mjs WORKDIR");
  process.exit(2);
}

const lines = (file) =>
  existsSync(file)
    ? readFileSync(file, "utf8").split("\n").map((l) => l.trimEnd()).filter(Boolean)
    : [];

const scenarios = lines(join(work, "scenarios.txt"));
const modes = lines(join(work, "modes.txt"));
const policy = new Map(); // `${mode}\t${scenario}` -> {kind, reason}
for (const line of lines(join(work, "policy.tsv"))) {
  const [mode, scenario, kind, reason] = line.split("\t");
  policy.set(`${mode}\t${scenario}`, { kind, reason });
}

// The CLI names each result directory `server-<scenario>-<ISO time with - for :.>`.
const DIR_RE = /^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;

function findChecks(root) {
  const found = new Map(); // scenario -> checks
  if (!existsSync(root)) return found;
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (!statSync(path).isDirectory()) continue;
      const m = DIR_RE.exec(name);
      const file = join(path, "checks.json");
      if (m && existsSync(file)) {
        try {
          found.set(m[1], JSON.parse(readFileSync(file, "utf8")));
        } catch (e) {
          found.set(m[1], [{ id: "checks.json", status: "FAILURE", errorMessage: `unreadable: ${e.message}` }]);
        }
      } else {
        walk(path);
      }
    }
  };
  walk(root);
  return found;
}

const STATUS_WIDTH = 6;
const NOTE_WIDTH = 20;
const results = {}; // mode -> scenario -> {status, note, failures[]}
let passed = 0;
let failed = 0;
let skipped = 0;
const xpasses = [];

for (const mode of modes) {
  const checks = findChecks(join(work, mode, "results"));
  const rcs = new Map(
    lines(join(work, mode, "status.tsv")).map((l) => {
      const [s, rc] = l.split("\t");
      return [s, Number(rc)];
    }),
  );
  const suiteRc = lines(join(work, mode, "suite.rc"))[0];
  results[mode] = {};
  for (const scenario of scenarios) {
    const pol = policy.get(`${mode}\t${scenario}`);
    if (pol?.kind === "exclude") {
      results[mode][scenario] = { status: "SKIP", note: "excluded" };
      skipped++;
      continue;
    }
    const list = checks.get(scenario);
    let status;
    let note = "";
    let failures = [];
    if (!list) {
      const rc = rcs.get(scenario) ?? (suiteRc !== undefined ? Number(suiteRc) : undefined);
      status = "FAIL";
      note = rc === 124 ? "no result: timed out" : `no result (CLI exit ${rc ?? "?"})`;
      failures = [{ id: "-", errorMessage: note }];
    } else {
      failures = list.filter((c) => c.status === "FAILURE");
      const ok = list.filter((c) => c.status === "SUCCESS").length;
      const warn = list.filter((c) => c.status === "WARNING").length;
      status = failures.length ? "FAIL" : "PASS";
      note = `${ok} ok` + (failures.length ? `, ${failures.length} failed` : "") + (warn ? `, ${warn} warn` : "");
    }
    if (pol?.kind === "xfail") {
      if (status === "FAIL") {
        status = "XFAIL";
        skipped++;
      } else {
        status = "XPASS";
        passed++;
        xpasses.push(`${mode} ${scenario}`);
      }
    } else if (status === "FAIL") {
      failed++;
    } else {
      passed++;
    }
    results[mode][scenario] = { status, note, failures };
  }
}

const width = Math.max(...scenarios.map((s) => s.length), 8);
console.log(`\n=== mcp-proxy conformance summary ===`);
console.log(`${"scenario".padEnd(width)}  ${modes.map((m) => m.padEnd(STATUS_WIDTH + 2 + NOTE_WIDTH)).join("")}`.trimEnd());
for (const scenario of scenarios) {
  const cells = modes.map((m) => {
    const r = results[m][scenario];
    return `${r.status.padEnd(STATUS_WIDTH)}  ${r.note.padEnd(NOTE_WIDTH)}`;
  });
  console.log(`${scenario.padEnd(width)}  ${cells.join("")}`.trimEnd());
}

const details = [];
for (const mode of modes) {
  for (const scenario of scenarios) {
    const r = results[mode][scenario];
    if (r.status !== "FAIL" && r.status !== "XFAIL") continue;
    const pol = policy.get(`${mode}\t${scenario}`);
    const control =
      mode !== "direct" && results.direct?.[scenario]?.status === "FAIL"
        ? " (fails without the proxy too: test server or suite)"
        : "";
    details.push(`${r.status} [${mode}] ${scenario}${pol ? ` (known: ${pol.reason})` : ""}${control}`);
    for (const c of r.failures) details.push(`    ${c.id}: ${c.errorMessage ?? c.description ?? ""}`);
  }
}
if (details.length) {
  console.log(`\nFailed checks:`);
  for (const d of details) console.log(d);
}
const excluded = [];
for (const mode of modes) {
  for (const scenario of scenarios) {
    const p = policy.get(`${mode}\t${scenario}`);
    if (p?.kind === "exclude") excluded.push(`  [${mode}] ${scenario}: ${p.reason}`);
  }
}
if (excluded.length) {
  console.log(`\nExcluded (not run):`);
  for (const line of excluded) console.log(line);
}
if (xpasses.length) {
  console.log(`\nNote: expected failures that now pass (drop them from run.sh's list): ${xpasses.join(", ")}`);
}
console.log(`conformance: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed ? 1 : 0);

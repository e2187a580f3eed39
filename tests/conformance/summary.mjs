// Reads the results that run.sh left in its work directory and prints one
// line per scenario and mode, the failed checks of every failing scenario, and
// a closing "conformance: N passed, N failed, N skipped" line.
// Exit status: 0 when nothing failed unexpectedly, 1 otherwise.
//
//   node summary.mjs WORKDIR
//
// WORKDIR holds:
//   scenarios.txt             the suite's server scenarios, one per line
//   policy.tsv                mode \t scenario \t exclude|xfail \t reason, or
//                             mode \t scenario \t ignore \t reason \t check-id,check-id...
//                             (those checks of the scenario do not count in that mode)
//   modes.txt                 the modes that were run, one per line:
//                             mode [\t scenario list (default scenarios.txt) \t control mode
//                             (default direct: the run without the proxy that tells a
//                             test-server or suite problem from a proxy one)]; one table is
//                             printed per scenario list, titled by <list>.title if present
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

const modeSpecs = lines(join(work, "modes.txt")).map((line) => {
  const [mode, list = "scenarios.txt", control = "direct"] = line.split("\t");
  return { mode, list, control };
});
const scenariosOf = new Map(); // scenario list file -> scenarios
for (const { list } of modeSpecs) {
  if (!scenariosOf.has(list)) scenariosOf.set(list, lines(join(work, list)));
}
const specOf = new Map(modeSpecs.map((m) => [m.mode, m]));
const policy = new Map(); // `${mode}\t${scenario}` -> {kind, reason}
const ignored = new Map(); // `${mode}\t${scenario}` -> {reason, ids: Set}
for (const line of lines(join(work, "policy.tsv"))) {
  const [mode, scenario, kind, reason, ids] = line.split("\t");
  if (kind === "ignore") ignored.set(`${mode}\t${scenario}`, { reason, ids: new Set((ids ?? "").split(",")) });
  else policy.set(`${mode}\t${scenario}`, { kind, reason });
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

for (const { mode, list: scenarioList } of modeSpecs) {
  const scenarios = scenariosOf.get(scenarioList);
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
      const ign = ignored.get(`${mode}\t${scenario}`);
      const counted = ign ? list.filter((c) => !ign.ids.has(c.id)) : list;
      failures = counted.filter((c) => c.status === "FAILURE");
      const ok = counted.filter((c) => c.status === "SUCCESS").length;
      const warn = counted.filter((c) => c.status === "WARNING").length;
      const skip = list.length - counted.length;
      status = failures.length ? "FAIL" : "PASS";
      note =
        `${ok} ok` +
        (failures.length ? `, ${failures.length} failed` : "") +
        (warn ? `, ${warn} warn` : "") +
        (skip ? `, ${skip} ign` : "");
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

console.log(`\n=== mcp-proxy conformance summary ===`);
for (const [list, scenarios] of scenariosOf) {
  const group = modeSpecs.filter((m) => m.list === list).map((m) => m.mode);
  const width = Math.max(...scenarios.map((s) => s.length), 8);
  const title = lines(join(work, list.replace(/\.txt$/, "") + ".title"))[0];
  if (title) console.log(`\n--- ${title} ---`);
  console.log(`${"scenario".padEnd(width)}  ${group.map((m) => m.padEnd(STATUS_WIDTH + 2 + NOTE_WIDTH)).join("")}`.trimEnd());
  for (const scenario of scenarios) {
    const cells = group.map((m) => {
      const r = results[m][scenario];
      return `${r.status.padEnd(STATUS_WIDTH)}  ${r.note.padEnd(NOTE_WIDTH)}`;
    });
    console.log(`${scenario.padEnd(width)}  ${cells.join("")}`.trimEnd());
  }
}

const details = [];
for (const { mode, list, control: controlMode } of modeSpecs) {
  for (const scenario of scenariosOf.get(list)) {
    const r = results[mode][scenario];
    if (r.status !== "FAIL" && r.status !== "XFAIL") continue;
    const pol = policy.get(`${mode}\t${scenario}`);
    const ctl = mode !== controlMode ? results[controlMode]?.[scenario]?.status : undefined;
    const control =
      ctl === "FAIL"
        ? " (fails without the proxy too: test server or suite)"
        : ctl === "PASS"
          ? ` (passes without the proxy, in ${controlMode}: a proxy problem)`
          : "";
    details.push(`${r.status} [${mode}] ${scenario}${pol ? ` (known: ${pol.reason})` : ""}${control}`);
    for (const c of r.failures) details.push(`    ${c.id}: ${c.errorMessage ?? c.description ?? ""}`);
  }
}
if (details.length) {
  console.log(`\nFailed checks:`);
  for (const d of details) console.log(d);
}
// One line per scenario (or checks) and reason, naming every mode it applies to.
const excluded = new Map(); // `${what}: ${reason}` -> modes
for (const { mode, list } of modeSpecs) {
  for (const scenario of scenariosOf.get(list)) {
    const p = policy.get(`${mode}\t${scenario}`);
    const ign = ignored.get(`${mode}\t${scenario}`);
    const entries = [];
    if (p?.kind === "exclude") entries.push(`${scenario}: ${p.reason}`);
    if (ign) entries.push(`${scenario}, checks ${[...ign.ids].join(", ")}: ${ign.reason}`);
    for (const key of entries) excluded.set(key, [...(excluded.get(key) ?? []), mode]);
  }
}
if (excluded.size) {
  console.log(`\nExcluded (not run, or run and not counted):`);
  for (const [key, where] of excluded) {
    const list = specOf.get(where[0]).list;
    const group = modeSpecs.filter((m) => m.list === list).map((m) => m.mode);
    const all = group.length > 1 && group.every((m) => where.includes(m));
    const title = lines(join(work, list.replace(/\.txt$/, "") + ".title"))[0] ?? list;
    console.log(`  [${all ? `every mode of ${title}` : where.join(", ")}] ${key}`);
  }
}
if (xpasses.length) {
  console.log(`\nNote: expected failures that now pass (drop them from run.sh's list): ${xpasses.join(", ")}`);
}
console.log(`conformance: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed ? 1 : 0);

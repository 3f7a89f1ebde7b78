#!/usr/bin/env node
// bundle: build the self-contained PostgreSQL bundle (DIR/launcher, DIR/v<major>/…).
import { buildBundle } from "../src/bundle/index.js";
import { defineFlags, parseCommandLine, UsageError } from "../src/config/index.js";

const description = `Build the self-contained PostgreSQL bundle from the installed Debian PostgreSQL
(every /usr/lib/postgresql/<N>, or --major): DIR/v<N>/ is a root filesystem holding
initdb, postgres (with \`postgres --wal-redo\`), the pgext/ C modules, contrib, share/,
time zones and every shared library down to the dynamic loader; DIR/launcher runs
one of its programs: \`DIR/launcher 15 initdb -D /data\`. Needs root. Idempotent:
unchanged inputs leave DIR as it is; otherwise DIR is replaced atomically.`;

const flags = defineFlags({
  out: { type: "string", valueName: "DIR", default: ".pgmesh/bundle", help: "where the bundle goes" },
  major: { type: "list", valueName: "N,M", help: "Postgres majors to include (default: every installed one)" },
  "pgext-dir": { type: "string", valueName: "DIR", help: "the C modules to build (default: this repository's pgext/)" },
  "postgres-user": { type: "string", valueName: "NAME", default: "postgres", help: "the unprivileged account, written into the bundle's /etc/passwd" },
});

const { values, majors } = parseCommandLine({ name: "bundle", description }, flags, {
  validate(parsed) {
    const majors = parsed.values.major?.map((m) => {
      if (!/^\d+$/.test(m)) throw new UsageError(`--major ${m} is not a major version number such as 15`);
      return Number(m);
    });
    return { values: parsed.values, majors: majors?.length ? majors : undefined };
  },
});

const built = await buildBundle({
  outDir: values.out,
  ...(majors ? { majors } : {}),
  ...(values.pgextDir ? { pgextDir: values.pgextDir } : {}),
  postgresUser: values.postgresUser,
  log: (line) => process.stderr.write(`bundle: ${line}\n`),
});
process.stdout.write(`${JSON.stringify({
  outDir: built.outDir,
  launcher: built.launcher,
  changed: built.changed,
  versions: Object.fromEntries(Object.entries(built.manifest.versions).map(([major, v]) => [major, {
    postgresVersion: v.postgresVersion, icuVersion: v.icuVersion, glibcVersion: v.glibcVersion, files: v.entries.length,
  }])),
}, null, 2)}\n`);

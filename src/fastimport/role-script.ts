/**
 * Turns `pg_dumpall --roles-only` output into the statements that create the
 * chosen roles in the snapshot. A compute's users are not superusers, so the
 * attributes only a superuser may hold or grant (SUPERUSER, REPLICATION,
 * BYPASSRLS) become their NO- forms; LOGIN, CREATEDB, CREATEROLE, INHERIT,
 * CONNECTION LIMIT, VALID UNTIL, the password hash, per-role settings,
 * comments and memberships between chosen roles carry over. The snapshot's
 * own superuser and predefined pg_* roles are never touched.
 */
export interface RoleScript {
  /** SQL statements, in order, each without its trailing ";". */
  readonly statements: readonly string[];
  /** Roles the statements create. */
  readonly roles: readonly string[];
  /** Roles that lost SUPERUSER, REPLICATION or BYPASSRLS. */
  readonly demoted: readonly string[];
  /** Statements that were left out (first words), for the log. */
  readonly skipped: readonly string[];
}

export interface RoleScriptOptions {
  /** "all", or the names to keep. */
  readonly roles: "all" | ReadonlySet<string>;
  /** Never created or altered: the snapshot's bootstrap superuser. */
  readonly superuser: string;
}

const demotions: Readonly<Record<string, string>> = {
  SUPERUSER: "NOSUPERUSER",
  REPLICATION: "NOREPLICATION",
  BYPASSRLS: "NOBYPASSRLS",
};

export function buildRoleScript(dump: string, options: RoleScriptOptions): RoleScript {
  const keep = (name: string) =>
    name !== options.superuser && !name.startsWith("pg_") && (options.roles === "all" || options.roles.has(name));
  const statements: string[] = [];
  const roles: string[] = [];
  const demoted: string[] = [];
  const skipped: string[] = [];
  for (const statement of splitStatements(dump)) {
    const tokens = tokenize(statement);
    const words = tokens.map((token) => (token.kind === "word" ? token.text.toUpperCase() : ""));
    const head = words.slice(0, 2).join(" ");
    if (words[0] === "SET") {
      statements.push(statement);
    } else if (head === "CREATE ROLE" && tokens.length === 3) {
      const name = identValue(tokens[2]);
      if (name !== undefined && keep(name)) {
        statements.push(statement);
        roles.push(name);
      }
    } else if (head === "ALTER ROLE" && words[3] === "WITH") {
      const name = identValue(tokens[2]);
      if (name === undefined || !keep(name)) continue;
      let changed = false;
      const rewritten = tokens.map((token, index) => {
        const replacement = index > 3 && token.kind === "word" ? demotions[token.text.toUpperCase()] : undefined;
        if (replacement === undefined) return token.text;
        changed = true;
        return replacement;
      });
      if (changed) demoted.push(name);
      statements.push(rewritten.join(" "));
    } else if (head === "ALTER ROLE" && (words[3] === "SET" || words[3] === "RESET")) {
      const name = identValue(tokens[2]);
      if (name !== undefined && keep(name)) statements.push(statement);
    } else if (head === "COMMENT ON" && words[2] === "ROLE") {
      const name = identValue(tokens[3]);
      if (name !== undefined && keep(name)) statements.push(statement);
    } else if (words[0] === "GRANT" && words[2] === "TO") {
      const granted = identValue(tokens[1]);
      const grantee = identValue(tokens[3]);
      if (granted === undefined || grantee === undefined || !keep(granted) || !keep(grantee)) continue;
      // The grantor may not be imported; the snapshot's superuser grants instead.
      const by = words.indexOf("GRANTED");
      statements.push(tokens.slice(0, by === -1 ? tokens.length : by).map((token) => token.text).join(" "));
    } else {
      skipped.push(words.slice(0, 3).filter(Boolean).join(" ") || statement.slice(0, 40));
    }
  }
  return { statements, roles, demoted, skipped };
}

interface Token {
  readonly kind: "word" | "ident" | "string" | "other";
  readonly text: string;
}

function identValue(token: Token | undefined): string | undefined {
  if (token?.kind === "word") return token.text;
  if (token?.kind === "ident") return token.text.slice(1, -1).replaceAll('""', '"');
  return undefined;
}

function tokenize(statement: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < statement.length) {
    const c = statement[i]!;
    if (/\s/.test(c)) {
      i += 1;
    } else if (c === "'" || c === '"') {
      const end = quotedEnd(statement, i);
      tokens.push({ kind: c === "'" ? "string" : "ident", text: statement.slice(i, end) });
      i = end;
    } else if (/[A-Za-z0-9_$]/.test(c)) {
      let end = i;
      while (end < statement.length && /[A-Za-z0-9_$]/.test(statement[end]!)) end += 1;
      // E'…' string literals: the prefix belongs to the string.
      if (statement.slice(i, end).toUpperCase() === "E" && statement[end] === "'") {
        const close = quotedEnd(statement, end);
        tokens.push({ kind: "string", text: statement.slice(i, close) });
        i = close;
      } else {
        tokens.push({ kind: "word", text: statement.slice(i, end) });
        i = end;
      }
    } else {
      tokens.push({ kind: "other", text: c });
      i += 1;
    }
  }
  return tokens;
}

/** Index just past the closing quote of the quoted run starting at `start` ('' and "" escape). */
function quotedEnd(text: string, start: number): number {
  const quote = text[start]!;
  // E'…' strings escape with backslashes; others only by doubling the quote.
  const escapes = quote === "'" && /(^|[^A-Za-z0-9_$])[eE]$/.test(text.slice(Math.max(0, start - 2), start));
  let i = start + 1;
  while (i < text.length) {
    if (escapes && text[i] === "\\") {
      i += 2;
    } else if (text[i] === quote) {
      if (text[i + 1] === quote) i += 2;
      else return i + 1;
    } else {
      i += 1;
    }
  }
  return text.length;
}

/**
 * Splits a pg_dumpall script into statements: skips comments and psql
 * meta-commands (\restrict, \connect…), respects quotes, drops the ";".
 */
export function splitStatements(script: string): string[] {
  const statements: string[] = [];
  let current = "";
  let i = 0;
  while (i < script.length) {
    const c = script[i]!;
    const atLineStart = i === 0 || script[i - 1] === "\n";
    if (current.trim() === "" && atLineStart && c === "\\") {
      i = lineEnd(script, i);
    } else if (c === "-" && script[i + 1] === "-") {
      i = lineEnd(script, i);
    } else if (c === "'" || c === '"') {
      const end = quotedEnd(script, i);
      current += script.slice(i, end);
      i = end;
    } else if (c === ";") {
      if (current.trim() !== "") statements.push(current.trim());
      current = "";
      i += 1;
    } else {
      current += c;
      i += 1;
    }
  }
  if (current.trim() !== "") statements.push(current.trim());
  return statements;
}

function lineEnd(text: string, from: number): number {
  const end = text.indexOf("\n", from);
  return end === -1 ? text.length : end + 1;
}

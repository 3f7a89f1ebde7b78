/**
 * The parameters of a Postgres extension control file (`name = 'value'`
 * lines, `#` comments), as Postgres's own parser reads them: quoted values
 * with '' for a quote, or bare words.
 */
export function parseControlFile(text: string): Map<string, string> {
  const params = new Map<string, string>();
  for (const rawLine of text.split("\n")) {
    const line = rawLine.trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([A-Za-z_][A-Za-z0-9_]*)\s*=?\s*(.*)$/.exec(line);
    if (match === null) continue;
    params.set(match[1]!, parseValue(match[2]!));
  }
  return params;
}

function parseValue(raw: string): string {
  if (!raw.startsWith("'")) return raw.replace(/\s*#.*$/, "").trim();
  let value = "";
  for (let i = 1; i < raw.length; i += 1) {
    const c = raw[i]!;
    if (c !== "'") {
      value += c;
    } else if (raw[i + 1] === "'") {
      value += "'";
      i += 1;
    } else {
      break;
    }
  }
  return value;
}

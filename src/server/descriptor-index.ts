import { toBinary, type DescExtension, type DescFile, type DescService } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";

/**
 * The .proto files behind a set of services, with their transitive imports,
 * indexed by file name and by fully-qualified symbol, as server reflection
 * needs them.
 */
export class DescriptorIndex {
  readonly serviceNames: readonly string[];
  readonly #files = new Map<string, DescFile>();
  readonly #symbols = new Map<string, DescFile>();
  readonly #messages = new Set<string>();
  readonly #extensions: DescExtension[] = [];
  readonly #encoded = new Map<string, Uint8Array>();

  constructor(services: readonly DescService[]) {
    this.serviceNames = services.map((s) => s.typeName);
    for (const service of services) this.#addFile(service.file);
  }

  #addFile(file: DescFile): void {
    if (this.#files.has(file.name + ".proto")) return;
    this.#files.set(file.name + ".proto", file);
    for (const dep of file.dependencies) this.#addFile(dep);
    for (const desc of nestedTypes(file)) {
      this.#symbols.set(desc.typeName, file);
      if (desc.kind === "service") {
        for (const m of desc.methods) this.#symbols.set(`${desc.typeName}.${m.name}`, file);
      } else if (desc.kind === "message") {
        this.#messages.add(desc.typeName);
        for (const f of desc.fields) this.#symbols.set(`${desc.typeName}.${f.name}`, file);
      } else if (desc.kind === "enum") {
        for (const v of desc.values) this.#symbols.set(`${desc.parent?.typeName ?? file.proto.package}.${v.name}`, file);
      } else {
        this.#extensions.push(desc);
      }
    }
  }

  fileByName(name: string): DescFile | undefined {
    return this.#files.get(name);
  }

  fileContainingSymbol(symbol: string): DescFile | undefined {
    return this.#symbols.get(symbol.replace(/^\./, ""));
  }

  /** Whether `typeName` is a message of these files. */
  hasMessage(typeName: string): boolean {
    return this.#messages.has(typeName);
  }

  extensionsOf(typeName: string): DescExtension[] {
    return this.#extensions.filter((e) => e.extendee.typeName === typeName);
  }

  /** `file` then its transitive imports, skipping names in `sent` (which gains them), as FileDescriptorProto bytes. */
  encodeWithDependencies(file: DescFile, sent: Set<string>): Uint8Array[] {
    const out: Uint8Array[] = [];
    const visit = (f: DescFile, force: boolean): void => {
      const name = f.name + ".proto";
      if (!force && sent.has(name)) return;
      sent.add(name);
      out.push(this.#encode(f));
      for (const dep of f.dependencies) visit(dep, false);
    };
    visit(file, true);
    return out;
  }

  #encode(file: DescFile): Uint8Array {
    let bytes = this.#encoded.get(file.name);
    if (bytes === undefined) {
      bytes = toBinary(FileDescriptorProtoSchema, file.proto);
      this.#encoded.set(file.name, bytes);
    }
    return bytes;
  }
}

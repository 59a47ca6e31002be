// A minimal ZIP writer (stored entries) to build .afps package archives in tests.
const TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** files: { name: string | Buffer } → Buffer holding a zip archive. */
export function zip(files) {
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const [name, content] of Object.entries(files)) {
    const data = Buffer.isBuffer(content) ? content : Buffer.from(content);
    const nameBuf = Buffer.from(name);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0, 6);
    local.writeUInt16LE(0, 8);
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(0x21, 12); // 1980-01-01
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    local.writeUInt16LE(0, 28);
    locals.push(local, nameBuf, data);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0, 8);
    central.writeUInt16LE(0, 10);
    central.writeUInt16LE(0, 12);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBuf.length, 28);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, nameBuf);
    offset += 30 + nameBuf.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  const count = Object.keys(files).length;
  end.writeUInt16LE(count, 8);
  end.writeUInt16LE(count, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

/** An agent package `@scope/name` whose input schema exercises the run form. */
export function agentArchive(scope, name, version = "1.0.0") {
  const manifest = {
    $schema: "https://afps.appstrate.dev/packages/schema/v2/agent.schema.json",
    schema_version: "2.0",
    type: "agent",
    name: `@${scope}/${name}`,
    version,
    display_name: "Form Tester",
    description: "An imported agent with every kind of input.",
    input: {
      schema: {
        type: "object",
        properties: {
          topic: { type: "string", description: "What to write about" },
          count: { type: "integer", default: 3, minimum: 1, maximum: 10 },
          tone: { type: "string", enum: ["plain", "formal"], default: "formal" },
          draft: { type: "boolean", description: "Keep it a draft" },
          attachment: { type: "string", format: "uri", contentMediaType: "application/octet-stream" },
        },
        required: ["topic", "count"],
      },
      property_order: ["tone", "topic", "count", "draft", "attachment"],
      file_constraints: { attachment: { accept: ".txt", max_size: 100000 } },
    },
    output: { schema: { type: "object", properties: { greeting: { type: "string" } } } },
    timeout: 60,
  };
  return zip({
    "manifest.json": JSON.stringify(manifest, null, 2),
    "prompt.md": "Write a greeting about the topic. Use the `output` tool once.\n",
  });
}

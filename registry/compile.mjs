// Compile one Solidity contract with the pinned npm `solc` into Grid's artifact format
// (ABI, bytecode, the exact compiler settings). Usage:
//   node registry/compile.mjs SOURCE.sol CONTRACT [OUT.json]   (stdout without OUT.json)
import { readFileSync, writeFileSync } from "node:fs";
import { basename } from "node:path";
import { createHash } from "node:crypto";
import solc from "solc";

const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
};

const [sourcePath, contractName, outPath] = process.argv.slice(2);
if (!sourcePath || !contractName) {
  console.error("usage: node registry/compile.mjs SOURCE.sol CONTRACT [OUT.json]");
  process.exit(2);
}
const source = readFileSync(sourcePath, "utf8");
const fileName = basename(sourcePath);
const input = {
  language: "Solidity",
  sources: { [fileName]: { content: source } },
  settings: {
    ...SETTINGS,
    outputSelection: {
      [fileName]: { [contractName]: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
    },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors ?? []).filter((e) => e.severity === "error");
for (const message of output.errors ?? []) console.error(message.formattedMessage);
if (errors.length) process.exit(1);
const contract = output.contracts?.[fileName]?.[contractName];
if (!contract) {
  console.error(`no contract ${contractName} in ${sourcePath}`);
  process.exit(1);
}
const artifact = {
  contractName,
  source: fileName,
  sourceSha256: createHash("sha256").update(source).digest("hex"),
  compiler: { solc: solc.version(), ...SETTINGS },
  abi: contract.abi,
  bytecode: "0x" + contract.evm.bytecode.object,
  deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
};
const text = JSON.stringify(artifact, null, 2) + "\n";
if (outPath) writeFileSync(outPath, text);
else process.stdout.write(text);

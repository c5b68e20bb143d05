const express = require("express");
const _ = require("lodash");
const pino = require("pino");
const { z } = require("zod");

const log = pino();
const Greeting = z.object({ name: z.string() });

if (process.argv.includes("--check")) {
  console.log("modules load:", typeof express, _.VERSION, typeof log.info, typeof Greeting.parse);
  process.exit(0);
}

const app = express();
app.get("/hello/:name", (req, res) => {
  const { name } = Greeting.parse(req.params);
  res.json({ greeting: `hello ${_.capitalize(name)}` });
});
app.listen(8080, () => log.info("listening on 8080"));

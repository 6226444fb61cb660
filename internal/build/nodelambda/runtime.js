// Berth's Node.js Lambda runtime loop: `berth build --runtime node-lambda`
// puts it in the image at /berth/lambda-runtime.js, run by lambdabridge,
// which serves it the Lambda Runtime API. It loads the handler named by
// _HANDLER ("index.handler": the export handler of /app/index.js, .mjs or
// .cjs), then asks for one invocation after another, as Lambda's own Node
// runtime does: async handlers and callback ones, the context object, the
// error shape ({errorType, errorMessage, trace}), init errors reported to
// /runtime/init/error. Built-in modules only.
"use strict";

const http = require("http");
const fs = require("fs");
const path = require("path");
const { pathToFileURL } = require("url");

const api = process.env.AWS_LAMBDA_RUNTIME_API;
const [apiHost, apiPort] = api.split(":");
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const taskRoot = process.env.LAMBDA_TASK_ROOT || "/app";

function request(method, urlPath, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: apiHost, port: apiPort, path: "/2018-06-01" + urlPath, method, agent, headers: headers || {} },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

function errorBody(err) {
  if (!(err instanceof Error)) {
    let msg;
    try {
      msg = typeof err === "string" ? err : JSON.stringify(err);
    } catch (e) {
      msg = String(err);
    }
    err = { name: "Error", message: msg, stack: "" };
  }
  return JSON.stringify({
    errorType: err.name || "Error",
    errorMessage: err.message || String(err),
    trace: String(err.stack || "").split("\n").filter(Boolean),
  });
}

function namedError(name, message, cause) {
  const e = new Error(message);
  e.name = name;
  if (cause && cause.stack) e.stack = name + ": " + message + "\n" + cause.stack;
  return e;
}

// loadHandler resolves "dir/file.export" under the task root as Lambda
// does: file.js, file.mjs or file.cjs; import() loads CommonJS and ES
// modules alike.
async function loadHandler(spec) {
  const dot = spec.lastIndexOf(".");
  if (dot <= 0) throw namedError("Runtime.MalformedHandlerName", `Bad handler ${spec}: it must be FILE.EXPORT, e.g. index.handler`);
  const modPath = spec.slice(0, dot);
  const fnPath = spec.slice(dot + 1);
  let file;
  for (const ext of [".js", ".mjs", ".cjs", ""]) {
    const f = path.resolve(taskRoot, modPath + ext);
    if (fs.existsSync(f) && fs.statSync(f).isFile()) {
      file = f;
      break;
    }
  }
  if (!file) throw namedError("Runtime.ImportModuleError", `Error: Cannot find module '${modPath}' in ${taskRoot}`);
  let mod;
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (e) {
    if (e instanceof SyntaxError) throw namedError("Runtime.UserCodeSyntaxError", String(e), e);
    throw namedError("Runtime.ImportModuleError", String(e), e);
  }
  // A CommonJS module's exports are import()'s default.
  let fn = mod[fnPath];
  if (typeof fn !== "function" && mod.default) fn = mod.default[fnPath];
  if (typeof fn !== "function") throw namedError("Runtime.HandlerNotFound", `${spec} is undefined or not exported`);
  return fn;
}

function contextFor(headers, deadline, done) {
  const fnName = process.env.AWS_LAMBDA_FUNCTION_NAME || "";
  const ctx = {
    awsRequestId: headers["lambda-runtime-aws-request-id"],
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
    functionName: fnName,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION || "$LATEST",
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE || "",
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME || "",
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME || process.env.BERTH_INSTANCE || "",
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    // The callbacks of Lambda's oldest Node runtimes.
    done: (err, res) => done(err, res),
    succeed: (res) => done(null, res),
    fail: (err) => done(err || new Error("fail")),
  };
  if (headers["lambda-runtime-client-context"]) {
    try {
      ctx.clientContext = JSON.parse(headers["lambda-runtime-client-context"]);
    } catch (e) {}
  }
  if (headers["lambda-runtime-cognito-identity"]) {
    try {
      ctx.identity = JSON.parse(headers["lambda-runtime-cognito-identity"]);
    } catch (e) {}
  }
  return ctx;
}

let current = null; // the request id being handled, for uncaught errors

async function postError(id, err) {
  await request("POST", `/runtime/invocation/${encodeURIComponent(id)}/error`, errorBody(err), { "Content-Type": "application/json" });
}

// An exception nothing caught, or a promise rejection nothing handled,
// fails the invocation in flight and ends the process, as on Lambda (the
// platform starts a new instance).
async function fatal(err) {
  console.error(err);
  try {
    if (current) await postError(current, err);
  } finally {
    process.exit(1);
  }
}
process.on("uncaughtException", fatal);
process.on("unhandledRejection", (reason) => fatal(reason instanceof Error ? reason : namedError("Runtime.UnhandledPromiseRejection", String(reason))));

function invoke(handler, event, headers, deadline) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (err, res) => {
      if (settled) return;
      settled = true;
      if (err !== null && err !== undefined) reject(err);
      else resolve(res);
    };
    const ctx = contextFor(headers, deadline, done);
    let out;
    try {
      out = handler(event, ctx, done);
    } catch (e) {
      done(e);
      return;
    }
    if (out && typeof out.then === "function") out.then((res) => done(null, res), (e) => done(e || new Error("rejected")));
    else if (handler.length < 3 && !settled) done(null, out);
  });
}

async function main() {
  let handler;
  try {
    handler = await loadHandler(process.env._HANDLER || "index.handler");
  } catch (e) {
    console.error(e);
    await request("POST", "/runtime/init/error", errorBody(e), {
      "Content-Type": "application/json",
      "Lambda-Runtime-Function-Error-Type": e.name,
    });
    // Stay: the bridge answers every invocation with the init error, so
    // the caller reads why rather than a restart loop.
    setInterval(() => {}, 1 << 30);
    return;
  }
  for (;;) {
    const next = await request("GET", "/runtime/invocation/next");
    const h = next.headers;
    const id = h["lambda-runtime-aws-request-id"];
    const deadline = Number(h["lambda-runtime-deadline-ms"]) || Date.now() + 30000;
    if (h["lambda-runtime-trace-id"]) process.env._X_AMZN_TRACE_ID = h["lambda-runtime-trace-id"];
    else delete process.env._X_AMZN_TRACE_ID;
    current = id;
    let event;
    try {
      event = next.body.length ? JSON.parse(next.body.toString("utf8")) : null;
    } catch (e) {
      await postError(id, namedError("Runtime.InvalidEventPayload", "the event is not JSON: " + e.message));
      current = null;
      continue;
    }
    try {
      const res = await invoke(handler, event, h, deadline);
      const body = res === undefined ? "null" : JSON.stringify(res);
      await request("POST", `/runtime/invocation/${encodeURIComponent(id)}/response`, body, { "Content-Type": "application/json" });
    } catch (e) {
      await postError(id, e);
    }
    current = null;
  }
}

main().catch(fatal);

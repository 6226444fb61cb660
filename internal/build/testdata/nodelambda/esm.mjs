// An ES module handler (_HANDLER=esm.handler), as Lambda loads .mjs files.
export const handler = async (event, context) => ({ esm: event, fn: context.functionName });

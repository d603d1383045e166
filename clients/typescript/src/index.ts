export { createPulseClient, ingestPath } from "./client.js";
export type { Logger, LogLevel, PulseClient, PulseClientOptions, PulseStats } from "./client.js";
export { limits, toWire, truncateUtf8, validServiceName } from "./validate.js";
export type { Metric, WireMetric } from "./validate.js";
export { defaultClient, setDefaultClient } from "./default.js";

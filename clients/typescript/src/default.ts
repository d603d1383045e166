import { createPulseClient, type PulseClient, type PulseStats } from "./client.js";

let current: PulseClient | undefined;

const disabled: PulseClient = {
  service: "disabled",
  record() {},
  flush: async () => {},
  shutdown: async () => disabled.stats(),
  stats: (): PulseStats => ({
    recorded: 0, sent: 0, retried: 0, dropped: 0, droppedInvalid: 0, droppedOverflow: 0, failed: 0, buffered: 0, inFlight: 0,
    lastError: "not configured: set PULSE_URL, PULSE_INGEST_TOKEN and PULSE_SERVICE",
  }),
};

/** setDefaultClient makes c the client the integrations use when given none. */
export function setDefaultClient(c: PulseClient): void {
  current = c;
}

/**
 * defaultClient returns the client set with setDefaultClient or, on first
 * use, one built from PULSE_URL, PULSE_INGEST_TOKEN and PULSE_SERVICE. When
 * they are missing or invalid it says so once and returns a client that
 * records nothing: the app keeps serving.
 */
export function defaultClient(): PulseClient {
  if (current) return current;
  const env = typeof process !== "undefined" ? process.env : {};
  try {
    current = createPulseClient({
      url: env.PULSE_URL ?? "",
      token: env.PULSE_INGEST_TOKEN ?? "",
      service: env.PULSE_SERVICE ?? "",
    });
  } catch (err) {
    console.error(`pulse-client: metrics are not reported: ${(err as Error).message} (set PULSE_URL, PULSE_INGEST_TOKEN and PULSE_SERVICE)`);
    current = disabled;
  }
  return current;
}

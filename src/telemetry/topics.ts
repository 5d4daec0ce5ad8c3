/**
 * Topic tree of one box, under `<topicPrefix>/<boxId>/` (docs/mqtt.md lists
 * every topic with an example payload). Ids that go into topic levels are
 * checked here, so that no level can hold a wildcard or a separator.
 */

/** A topic level: letters, digits, dot, dash and underscore, as box ids, alarm ids and command names are. */
const LEVEL = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Returns true when `value` can be used as one topic level. */
export function isTopicLevel(value: string): boolean {
  return LEVEL.test(value);
}

/** Returns true for a topic name a client may publish to: not empty, no wildcards, no NUL (MQTT 5 section 4.7). */
export function isPublishableTopic(topic: string): boolean {
  return topic.length > 0 && Buffer.byteLength(topic) <= 65_535 && !/[#+\u0000]/.test(topic);
}

export interface TelemetryTopics {
  /** `<prefix>/<boxId>`; every topic of the box starts with it. */
  base: string;
  /** Retained `online` or `offline`; the Last Will sets `offline`. */
  availability: string;
  /** Retained status document. */
  status: string;
  /** Retained list of the alarms active now. */
  alarms: string;
  /** Filter that matches every command request of the box. */
  commandFilter: string;
  /** Default topic of command responses when the request names none. */
  responses: string;
  event(type: string): string;
  command(name: string): string;
  /** Returns the command name of a request topic, or undefined for another topic. */
  commandName(topic: string): string | undefined;
}

/** Builds the topics of one box. Throws when the box id cannot be a topic level. */
export function telemetryTopics(prefix: string, boxId: string): TelemetryTopics {
  if (!isTopicLevel(boxId)) throw new Error(`box id "${boxId}" cannot be used as a topic level`);
  const base = `${prefix.replace(/\/+$/, '')}/${boxId}`;
  const commandBase = `${base}/commands/`;
  return {
    base,
    availability: `${base}/availability`,
    status: `${base}/status`,
    alarms: `${base}/alarms`,
    commandFilter: `${commandBase}+`,
    responses: `${base}/responses`,
    event: (type) => `${base}/events/${type}`,
    command: (name) => `${commandBase}${name}`,
    commandName: (topic) => (topic.startsWith(commandBase) ? topic.slice(commandBase.length) : undefined),
  };
}

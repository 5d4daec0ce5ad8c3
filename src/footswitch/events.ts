import type { PedalAction } from '../profile/schema.js';

export type GestureKind = 'short' | 'long' | 'double';

/** A debounced change of the pedal contact. */
export interface PedalChange {
  down: boolean;
  /** Clock ms of the first raw edge of this change, before debounce confirmation. */
  at: number;
}

/** A recognised gesture and the action the profile maps it to. */
export interface GestureRecognized {
  gesture: GestureKind;
  action: PedalAction;
  /** Clock ms of the first raw down edge of the gesture, before debounce confirmation. */
  pressedAt: number;
}

/** Events shared by every pedal source (serial footswitch, keyboard). */
export interface FootswitchEvents {
  connected: [{ path: string }];
  disconnected: [{ path: string; reason: string }];
  pedalChanged: [PedalChange];
  gesture: [GestureRecognized];
}

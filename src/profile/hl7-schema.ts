import { z } from 'zod';
import { hl7CharacterSets } from '../hl7/hl7-character-sets.js';

const ipv4Address = z.ipv4();
const ipv6Address = z.ipv6();

/** IPv4 or IPv6 address literal; host names are not accepted, because a peer is checked by its address. */
const ipAddress = z
  .string()
  .refine((value) => ipv4Address.safeParse(value).success || ipv6Address.safeParse(value).success, 'IP address such as 192.0.2.10, not a host name');

/** Text of an HL7 ST value in the ACK's MSH: printable ASCII without the default delimiters. */
const hl7Name = z.string().regex(/^[\x20-\x7e]{0,64}$/, 'at most 64 printable ASCII characters').refine((value) => !/[|^~\\&]/.test(value), 'text without the HL7 delimiters | ^ ~ \\ &');

const MIB = 1024 * 1024;

export const hl7Schema = z
  .strictObject({
    host: ipAddress.describe('Local address the MLLP listener binds to; 0.0.0.0 listens on every IPv4 interface.'),
    port: z.number().int().min(1).max(65535).describe('TCP port of the MLLP listener.'),
    allowedPeers: z
      .array(ipAddress)
      .min(1)
      .optional()
      .describe('Source addresses allowed to connect, such as the interface engine; absent allows every address. Other connections are closed at once.'),
    receivingApplication: hl7Name.default('ENDOCAP').describe('Sending application (MSH-3) of the ACKs, the name this box answers as.'),
    receivingFacility: hl7Name.default('').describe('Sending facility (MSH-4) of the ACKs.'),
    defaultCharacterSet: z
      .enum(hl7CharacterSets)
      .default('ASCII')
      .describe('Character set of a message whose MSH-18 is empty. HL7 makes it ASCII; set 8859/1 or UNICODE UTF-8 for a sender that sends such text without declaring it.'),
    maxMessageBytes: z
      .number()
      .int()
      .min(1_024)
      .max(16 * MIB)
      .default(MIB)
      .describe('Largest message accepted, in bytes; a longer one is read to its end, dropped and answered with AR.'),
    maxConnections: z.number().int().min(1).max(64).default(8).describe('Connections served at the same time; more are closed at once.'),
    orderRetentionHours: z
      .number()
      .min(1)
      .max(8_760)
      .default(72)
      .describe('Hours an order stays selectable after it was placed or last changed, when no cancel arrives.'),
    patientIdAuthority: z
      .string()
      .min(1)
      .max(64)
      .optional()
      .describe('Assigning authority (PID-3 CX-4, namespace or universal id) of the patient identifier to use; absent takes the first identifier of PID-3.'),
    accessionNumberField: z
      .string()
      .regex(/^[A-Z][A-Z0-9]{2}-[1-9]\d{0,2}(\.[1-9]\d?)?$/, 'field position such as OBR-18 or ZDS-2.1')
      .default('OBR-18')
      .describe('Field of an ORM^O01 order that holds the accession number, as SEG-n or SEG-n.c; OBR-18 (placer field 1), where radiology order interfaces commonly put it. OMI^O23 always uses IPC-1.'),
  })
  .describe('HL7 v2 order receiver: an MLLP listener for ORM^O01 and OMI^O23 orders and ADT^A08 and ADT^A40 updates, whose orders can be selected like worklist procedures.');

export type Hl7Config = z.infer<typeof hl7Schema>;

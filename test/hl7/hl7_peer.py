"""HL7 sender for tests: python-hl7 (Debian python3-hl7) over real TCP.

Reads a JSON request on stdin: {"host", "port", "steps": [...]}. All steps
run in order on one MLLP connection. Prints one JSON result per step.

Steps:
  {"op": "send", "message": TEXT, "encoding": "utf-8" | "latin-1"}
      parses TEXT with hl7.parse, sends str(message) encoded as asked with
      MLLPClient.send_message, and reads the ACK.
  {"op": "split", "message": TEXT, "encoding": ..., "parts": N, "pauseMs": MS}
      sends the framed message in N separate socket writes with a pause
      between them, then reads the ACK.
  {"op": "raw", "hex": HEX, "expectAck": BOOL, "waitMs": MS}
      writes raw bytes; reads an ACK when expectAck, else checks that none
      arrives within waitMs.
"""
import json
import socket
import sys
import time

import hl7
from hl7.client import CR, EB, SB, MLLPClient


def read_ack(sock, timeout):
    sock.settimeout(timeout)
    data = b''
    try:
        while not data.endswith(EB + CR):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    return data


def describe_ack(data):
    if not data:
        return {'ack': None}
    if not (data.startswith(SB) and data.endswith(EB + CR)):
        return {'ack': None, 'raw': data.hex()}
    text = data[1:-2].decode('latin-1')
    message = hl7.parse(text)
    header = message.segment('MSH')
    msa = message.segment('MSA')

    def field(segment, number):
        # Whole fields, unescaped by the library; segment[n] is field n (for MSH too: python-hl7 puts MSH-1 at index 1).
        return message.unescape(str(segment[number])) if len(segment) > number else ''

    fields = {
        'raw': text,
        'msh3': field(header, 3),
        'msh5': field(header, 5),
        'msh9': field(header, 9),
        'msh10': field(header, 10),
        'msh18': field(header, 18),
        'msa1': field(msa, 1),
        'msa2': field(msa, 2),
        'msa3': field(msa, 3),
    }
    try:
        err = message.segment('ERR')
    except KeyError:
        err = None
    if err is not None:
        fields['errCode'] = str(err[3][0][0]) if len(err) > 3 else ''
        fields['errLocation'] = field(err, 2)
        fields['errText'] = field(err, 8)
    return {'ack': fields}


def main():
    request = json.load(sys.stdin)
    results = []
    with MLLPClient(request['host'], request['port']) as client:
        for step in request['steps']:
            op = step['op']
            if op == 'send':
                parsed = hl7.parse(step['message'])
                binary = str(parsed).encode(step['encoding'])
                client.socket.settimeout(10)
                first = client.send_message(binary)
                rest = b'' if first.endswith(EB + CR) else read_ack(client.socket, 10)
                results.append(describe_ack(first + rest))
            elif op == 'split':
                parsed = hl7.parse(step['message'])
                framed = SB + str(parsed).encode(step['encoding']) + EB + CR
                parts = step['parts']
                size = -(-len(framed) // parts)
                for index in range(parts):
                    client.socket.sendall(framed[index * size:(index + 1) * size])
                    if index < parts - 1:
                        time.sleep(step['pauseMs'] / 1000)
                results.append({**describe_ack(read_ack(client.socket, 10)), 'writes': parts})
            elif op == 'raw':
                client.socket.sendall(bytes.fromhex(step['hex']))
                wait = 10 if step['expectAck'] else step['waitMs'] / 1000
                results.append(describe_ack(read_ack(client.socket, wait)))
            else:
                raise ValueError('unknown op ' + op)
    print(json.dumps(results))


main()

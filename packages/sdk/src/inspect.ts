/**
 * What an object holds, without the kernel: programs, maps with their BTF key/value/event
 * types, and globals. Used by `tslcc compile --inspect` and by tests.
 */
import type { MapInfo, ProgramInfo } from '@tslcc/native';
import { Btf } from './btf.js';
import { native } from './native.js';

export interface MapDescription {
  name: string;
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** C type of the key / value (BTF), if any. */
  keyType?: string;
  valueType?: string;
  /** Event type of LBC_PERF_OUTPUT / LBC_RINGBUF maps. */
  eventType?: string;
  /** Histogram base of LBC_HIST2 / LBC_HIST10. */
  hist?: 2 | 10;
}

export interface ObjectDescription {
  programs: ProgramInfo[];
  maps: MapDescription[];
  globals: Array<{ name: string; section: string; type: string }>;
}

export function describeObject(elf: Buffer, name = 'prog'): ObjectDescription {
  const obj = new (native().BpfObject)(elf, name, {});
  try {
    const btf = new Btf(obj.btf() ?? [null]);
    const maps: MapDescription[] = [];
    const globals: ObjectDescription['globals'] = [];
    for (const m of obj.maps() as MapInfo[]) {
      if (m.internal) {
        const sec = btf.get(m.btfValueTypeId);
        if (sec?.kind === 'datasec') {
          for (const v of btf.sectionVars(sec.name).values()) globals.push({ name: v.name, section: sec.name, type: btf.typeName(v.type) });
        }
        continue;
      }
      const d: MapDescription = { name: m.name, type: m.typeName, keySize: m.keySize, valueSize: m.valueSize, maxEntries: m.maxEntries };
      if (m.btfKeyTypeId) d.keyType = btf.typeName(m.btfKeyTypeId);
      if (m.btfValueTypeId) d.valueType = btf.typeName(m.btfValueTypeId);
      const carrier = btf.lbcCarrier(m.name);
      if (carrier.eventType) d.eventType = btf.typeName(carrier.eventType);
      if (carrier.hist) d.hist = carrier.hist;
      maps.push(d);
    }
    return { programs: obj.programs(), maps, globals };
  } finally {
    obj.close();
  }
}

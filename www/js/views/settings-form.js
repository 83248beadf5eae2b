// The Train screen's settings form, rendered from the engine's settings list (`settings` worker
// request): each field's default, range and explanation come from the engine, never from here.
import { el } from '../util.js';

const GROUPS = { loss: 'KTO loss', optimizer: 'Optimizer', data: 'Data', lora: 'Method' };

function field(s, value, onChange) {
  const attrs = { id: s.flag, 'data-testid': s.flag, name: s.key };
  let input;
  if (s.kind.type === 'choice') {
    input = el('select', attrs, s.kind.options.map(([v, label]) => el('option', { value: v, selected: v === value }, label)));
  } else if (s.kind.type === 'bool') {
    input = el('input', { ...attrs, type: 'checkbox', checked: !!value });
  } else if (s.kind.type === 'number') {
    input = el('input', { ...attrs, type: 'number', min: s.kind.min, max: s.kind.max ?? undefined, step: s.kind.integer ? 1 : s.kind.step, value: String(value) });
  } else {
    input = el('input', { ...attrs, value: String(value), size: 22 });
  }
  input.addEventListener('input', onChange);
  input.addEventListener('change', onChange);
  const title = s.trl_default ? `${s.help} TRL default: ${s.trl_default}.` : s.help;
  // A checkbox sits beside its label; other fields under it.
  const label = s.kind.type === 'bool'
    ? el('label', { class: 'check', title }, input, ` ${s.label}`)
    : el('label', { title }, el('span', { class: 'name' }, s.label), input);
  return label;
}

/** Value of one field as the engine wants it. */
function read(s) {
  const input = document.getElementById(s.flag);
  if (s.kind.type === 'bool') return input.checked;
  if (s.kind.type === 'number') return Number(input.value);
  return input.value;
}

/** Render `schema` into `container` with `values`; `onChange(values)` after each edit. Returns
 *  `{ values(), set(key, value) }`. */
export function renderSettingsForm(container, schema, values, onChange) {
  const changed = () => onChange(current());
  const current = () => Object.fromEntries(schema.map((s) => [s.key, read(s)]));
  const groups = Object.entries(GROUPS).map(([g, title]) => el('fieldset', { class: 'row controls', 'data-group': g },
    el('legend', {}, title), schema.filter((s) => s.group === g).map((s) => field(s, values[s.key] ?? s.default, changed))));
  container.replaceChildren(...groups);
  return {
    values: current,
    set(key, value) {
      const s = schema.find((x) => x.key === key);
      const input = document.getElementById(s.flag);
      if (s.kind.type === 'bool') input.checked = !!value; else input.value = String(value);
      changed();
    },
    /** Enable or disable every field of a group (LoRA's fields under full fine-tuning). */
    enableWhere(pred, on) {
      for (const s of schema.filter(pred)) document.getElementById(s.flag).disabled = !on;
    },
  };
}

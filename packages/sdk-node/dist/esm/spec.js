/**
 * The caller's action as the wire's `action_spec`, checked before anything is sent:
 * the same grammar as the Python core (`agentfirewall.actions`), so a typo fails fast
 * with ActionSpecError instead of a round trip.
 */
import { ActionSpecError } from "./errors.js";
import { spellingHint } from "./options.js";
/** Dotted lowercase `provider.resource.verb`: 2 to 8 segments (agentfirewall.actions). */
export const ACTION_TYPE_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}(?:\.[a-z0-9_-]{1,63}){1,7}$/;
const RESOURCE_FIELDS = ["provider", "account", "target", "environment"];
const ACTION_FIELDS = ["type", "resource", "parameters", "riskHints"];
/** A field the action does not have is a mistake (a Python spelling, a resource field one
 * level up), not something to drop silently: it may be what a policy was meant to see. */
function checkFields(input) {
    for (const key of Object.keys(input)) {
        if (ACTION_FIELDS.includes(key))
            continue;
        const where = RESOURCE_FIELDS.includes(key)
            ? `: it belongs in \`resource\` ({ type, resource: { ${key} } })`
            : spellingHint(key, ACTION_FIELDS);
        throw new ActionSpecError(`unknown action field \`${key}\`${where} (an action has ${ACTION_FIELDS.join(", ")})`, key);
    }
}
function isObjectLike(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}
/** An object literal (or `Object.create(null)`): not a Date, Map, Set, Buffer or class
 * instance, which `JSON.stringify` would turn into a string, `{}` or something else. */
function isPlainObject(value) {
    if (!isObjectLike(value))
        return false;
    const proto = Object.getPrototypeOf(value);
    return proto === Object.prototype || proto === null;
}
/** What a value that is not JSON is, for the error message: `Date`, `Map`, `function`... */
function kindOf(value) {
    if (typeof value !== "object" || value === null)
        return typeof value;
    const tag = Object.prototype.toString.call(value).slice(8, -1);
    const name = value.constructor?.name;
    const classed = tag === "Object" || tag === "Array"; // a class instance, an Array subclass
    return classed && typeof name === "string" && name !== "" ? name : tag;
}
/** The canonical name of array index `i` (`"0"`, `"1"`...), as an own key shows it. */
const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/;
/** Own property `key` of `value` as a path: `parameters.to`, `parameters.ids[2]`. */
function pathOf(path, key, array) {
    return array && ARRAY_INDEX.test(key) ? `${path}[${key}]` : `${path}.${key}`;
}
/** The own, enumerable data properties of a plain object or an array, in `JSON.stringify`'s
 * order; anything it would skip, call or read differently is refused: a symbol key, a
 * property that is not enumerable (a hidden `toJSON`), a getter or setter (its value could
 * change between the check and the send), a key of an array that is not an index (`toJSON`,
 * `admin`), a hole in an array (sent as `null`). */
function ownData(value, path, array) {
    const data = [];
    for (const key of Reflect.ownKeys(value)) {
        if (typeof key === "symbol") {
            throw new ActionSpecError(`\`${path}\`: a symbol key (${String(key)}) is not JSON`, path);
        }
        if (array && key === "length")
            continue;
        const where = pathOf(path, key, array);
        if (array && !ARRAY_INDEX.test(key)) {
            throw new ActionSpecError(`\`${where}\`: an array with a property that is not an index is not JSON`, where);
        }
        const descriptor = Object.getOwnPropertyDescriptor(value, key);
        if (descriptor === undefined || !("value" in descriptor)) {
            throw new ActionSpecError(`\`${where}\`: a getter or setter is not JSON: pass its value`, where);
        }
        if (descriptor.enumerable !== true) {
            throw new ActionSpecError(`\`${where}\`: a property that is not enumerable is not JSON`, where);
        }
        data.push([key, descriptor.value]);
    }
    const hole = array ? data.findIndex(([key], i) => key !== String(i)) : -1;
    if (hole !== -1 || (array && data.length !== value.length)) {
        const where = `${path}[${hole === -1 ? data.length : hole}]`;
        throw new ActionSpecError(`\`${where}\`: a hole in an array is not JSON`, where);
    }
    return data;
}
/**
 * `value` copied as the JSON it is, each property read once: the copy is what is sent, so
 * the firewall decides on exactly what was checked. JSON has no NaN, Infinity, undefined,
 * functions, Dates or Maps, and `JSON.stringify` would drop or convert them (or call a
 * `toJSON`): refuse them instead. Only plain objects and arrays whose prototype is
 * `Array.prototype` (not a subclass) hold values; a Proxy is read like the object it shows.
 */
function jsonCopy(value, path, open) {
    if (value === null || typeof value === "string" || typeof value === "boolean")
        return value;
    if (typeof value === "number") {
        if (!Number.isFinite(value))
            throw new ActionSpecError(`\`${path}\`: numbers must be finite`, path);
        return value;
    }
    const array = Array.isArray(value) && Object.getPrototypeOf(value) === Array.prototype;
    if (!array && !isPlainObject(value)) {
        throw new ActionSpecError(`\`${path}\`: not a JSON value (${kindOf(value)})`, path);
    }
    if (open.has(value))
        throw new ActionSpecError(`\`${path}\`: a circular reference is not JSON`, path);
    open.add(value);
    const data = ownData(value, path, array);
    const copied = data.map(([key, item]) => [key, jsonCopy(item, pathOf(path, key, array), open)]);
    open.delete(value);
    return array ? copied.map(([, item]) => item) : Object.fromEntries(copied);
}
function jsonObject(value, name) {
    if (value === undefined || value === null)
        return {};
    if (!isPlainObject(value))
        throw new ActionSpecError(`\`${name}\` must be an object`, name);
    return jsonCopy(value, name, new Set());
}
function resource(value) {
    if (value === undefined || value === null)
        return {};
    if (!isPlainObject(value))
        throw new ActionSpecError("`resource` must be an object", "resource");
    const out = {};
    for (const [key, item] of Object.entries(value)) {
        if (!RESOURCE_FIELDS.includes(key)) {
            const known = RESOURCE_FIELDS.join(", ");
            throw new ActionSpecError(`unknown resource field \`${key}\`: expected one of ${known}`, `resource.${key}`);
        }
        if (item === undefined || item === null)
            continue;
        if (typeof item !== "string") {
            throw new ActionSpecError(`\`resource.${key}\` must be a string`, `resource.${key}`);
        }
        out[key] = item;
    }
    return out;
}
/** `{type, resource, parameters, risk_hints}` for the wire; throws ActionSpecError. */
export function buildActionSpec(input) {
    if (!isObjectLike(input))
        throw new ActionSpecError("the action must be an object with a `type`");
    checkFields(input);
    const type = input.type;
    if (typeof type !== "string" || !ACTION_TYPE_PATTERN.test(type)) {
        const shown = typeof type === "string" ? type : String(type);
        throw new ActionSpecError(`invalid action type \`${shown}\`: expected dotted lowercase like \`github.pr.merge\``, "type");
    }
    return {
        type,
        resource: resource(input.resource),
        parameters: jsonObject(input.parameters, "parameters"),
        risk_hints: jsonObject(input.riskHints, "riskHints"),
    };
}

"use strict";
/**
 * The caller's action as the wire's `action_spec`, checked before anything is sent:
 * the same grammar as the Python core (`agentfirewall.actions`), so a typo fails fast
 * with ActionSpecError instead of a round trip.
 */
Object.defineProperty(exports, "__esModule", { value: true });
exports.ACTION_TYPE_PATTERN = void 0;
exports.buildActionSpec = buildActionSpec;
const errors_js_1 = require("./errors.js");
const options_js_1 = require("./options.js");
/** Dotted lowercase `provider.resource.verb`: 2 to 8 segments (agentfirewall.actions). */
exports.ACTION_TYPE_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}(?:\.[a-z0-9_-]{1,63}){1,7}$/;
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
            : (0, options_js_1.spellingHint)(key, ACTION_FIELDS);
        throw new errors_js_1.ActionSpecError(`unknown action field \`${key}\`${where} (an action has ${ACTION_FIELDS.join(", ")})`, key);
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
    return tag === "Object" && typeof name === "string" && name !== "" ? name : tag;
}
/** JSON has no NaN, Infinity, undefined, functions, Dates or Maps: refuse them rather
 * than let `JSON.stringify` drop or convert them. */
function checkJson(value, path) {
    if (value === null || typeof value === "string" || typeof value === "boolean")
        return;
    if (typeof value === "number") {
        if (!Number.isFinite(value))
            throw new errors_js_1.ActionSpecError(`\`${path}\`: numbers must be finite`, path);
        return;
    }
    if (Array.isArray(value)) {
        value.forEach((item, i) => checkJson(item, `${path}[${i}]`));
        return;
    }
    if (isPlainObject(value)) {
        for (const [key, item] of Object.entries(value))
            checkJson(item, `${path}.${key}`);
        return;
    }
    throw new errors_js_1.ActionSpecError(`\`${path}\`: not a JSON value (${kindOf(value)})`, path);
}
function jsonObject(value, name) {
    if (value === undefined || value === null)
        return {};
    if (!isPlainObject(value))
        throw new errors_js_1.ActionSpecError(`\`${name}\` must be an object`, name);
    checkJson(value, name);
    return value;
}
function resource(value) {
    if (value === undefined || value === null)
        return {};
    if (!isPlainObject(value))
        throw new errors_js_1.ActionSpecError("`resource` must be an object", "resource");
    const out = {};
    for (const [key, item] of Object.entries(value)) {
        if (!RESOURCE_FIELDS.includes(key)) {
            const known = RESOURCE_FIELDS.join(", ");
            throw new errors_js_1.ActionSpecError(`unknown resource field \`${key}\`: expected one of ${known}`, `resource.${key}`);
        }
        if (item === undefined || item === null)
            continue;
        if (typeof item !== "string") {
            throw new errors_js_1.ActionSpecError(`\`resource.${key}\` must be a string`, `resource.${key}`);
        }
        out[key] = item;
    }
    return out;
}
/** `{type, resource, parameters, risk_hints}` for the wire; throws ActionSpecError. */
function buildActionSpec(input) {
    if (!isObjectLike(input))
        throw new errors_js_1.ActionSpecError("the action must be an object with a `type`");
    checkFields(input);
    const type = input.type;
    if (typeof type !== "string" || !exports.ACTION_TYPE_PATTERN.test(type)) {
        const shown = typeof type === "string" ? type : String(type);
        throw new errors_js_1.ActionSpecError(`invalid action type \`${shown}\`: expected dotted lowercase like \`github.pr.merge\``, "type");
    }
    return {
        type,
        resource: resource(input.resource),
        parameters: jsonObject(input.parameters, "parameters"),
        risk_hints: jsonObject(input.riskHints, "riskHints"),
    };
}

'use strict';
// Loaded by `tf run` through NODE_OPTIONS=--require: sends Node's HTTP clients through the
// TameFlare gateway named by HTTPS_PROXY/HTTP_PROXY; only the NO_PROXY hosts (the control
// plane) and the gateway itself are reached directly.
//
// 1. Node's `http`/`https` agents (http.globalAgent, https.globalAgent, `new http.Agent()`,
//    `new https.Agent()`, `agent: false`, and subclasses that reach Node's own connection code,
//    such as agentkeepalive's): what node-fetch, got, superagent and request use. Node 20 has
//    no proxy support of its own there (NODE_USE_ENV_PROXY came later), so the agents' shared
//    prototype is routed: an https:// request goes through a CONNECT tunnel to the gateway, an
//    http:// request is sent to the gateway as a proxy request (the target URL in the request
//    line, the agent's Proxy-Authorization), as curl and Python clients send it: after a
//    CONNECT the gateway expects TLS. The credential is written only on a connection this
//    preload opened to the gateway, into the head as it goes out: never into a request's
//    header map or its `_header`, which a program reads, copies into a redirect and prints.
//    A request with a connection function of its own and no agent (the `ws` package's) is
//    given an agent that routes it; one made without http.request that way is refused.
// 2. Node's global fetch (undici), which ignores the proxy variables in Node 20, and the
//    `undici` package's request/fetch: a global dispatcher with the same two rules, made from
//    the `undici` package's Agent when it resolves (beside the script, from the working
//    directory, or from TF_NODE_MODULES: `.tf/node/node_modules`), otherwise from the undici
//    bundled in Node; without either (`--no-experimental-fetch` and no package), one that
//    refuses, so that an undici loaded later never connects directly. (undici's own
//    EnvHttpProxyAgent is not used: it sends http:// through a CONNECT tunnel too.)
// The gateway CA is trusted through NODE_EXTRA_CA_CERTS, which tf run also sets. What was
// installed is in globalThis[Symbol.for('tameflare.preload')] (`tf doctor` reads it); tf run
// puts this preload first in NODE_OPTIONS, and only the first copy loaded installs.
(function installTameFlareProxy() {
  const proxy = process.env.HTTPS_PROXY || process.env.https_proxy ||
    process.env.HTTP_PROXY || process.env.http_proxy;
  if (!proxy || globalThis[Symbol.for('tameflare.preload')]) return;
  const net = require('net');
  const path = require('path');
  const tls = require('tls');
  const { Duplex } = require('stream');
  const gateway = parseGateway(proxy);
  const installed = { agents: false, fetch: 'not routed' };
  globalThis[Symbol.for('tameflare.preload')] = installed;

  // Unreadable, it stops node (nothing may run unrouted), without showing it: it holds the key.
  function parseGateway(text) {
    try {
      const url = new URL(text);
      const auth = url.username
        ? 'Basic ' + Buffer.from(decodeURIComponent(url.username) + ':' +
          decodeURIComponent(url.password)).toString('base64')
        : null;
      const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
      return { host: bare(url.hostname), port, origin: url.origin, auth };
    } catch (_) {
      throw new Error('tf run: HTTPS_PROXY holds no URL: start the agent with `tf run` ' +
        'and keep the proxy variables it sets');
    }
  }

  function bare(host) {
    return String(host).replace(/^\[|\]$/g, '');
  }

  function authority(host, port, defaultPort) {
    const name = host.includes(':') ? '[' + host + ']' : host;
    return port === defaultPort ? name : name + ':' + port;
  }

  // NO_PROXY (tf run sets it to the control plane's host only): those hosts go direct, and so
  // does the gateway itself (a client that speaks to the proxy on its own, as axios does).
  const noProxy = (process.env.NO_PROXY || process.env.no_proxy || '').split(',')
    .map((entry) => entry.trim().toLowerCase().replace(/^\*?\./, '')).filter(Boolean);

  function bypassed(hostname, port) {
    const host = bare(hostname).toLowerCase();
    if (host === gateway.host.toLowerCase() && Number(port) === gateway.port) return true;
    return noProxy.some((entry) => host === entry || host.endsWith('.' + entry));
  }

  // A raw socket to `target` (host:port) through the gateway: CONNECT, then its 200.
  function connectThrough(target, callback) {
    const socket = net.connect(gateway.port, gateway.host);
    let settled = false;
    let buffer = Buffer.alloc(0);
    const fail = (err) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      callback(err, null);
    };
    socket.once('error', fail);
    socket.once('connect', () => {
      let head = 'CONNECT ' + target + ' HTTP/1.1\r\nHost: ' + target + '\r\n';
      if (gateway.auth) head += 'Proxy-Authorization: ' + gateway.auth + '\r\n';
      socket.write(head + '\r\n');
    });
    const onData = (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buffer.length > 65536) fail(new Error('TameFlare gateway answer too long'));
        return;
      }
      socket.removeListener('data', onData);
      const status = Number(buffer.subarray(0, end).toString('latin1').split(' ')[1]);
      if (status !== 200) {
        const why = status === 407 ? ': the proxy credential in HTTPS_PROXY is not accepted ' +
          '(a `tf run` that ended, a rotated key): start the agent with `tf run`' : '';
        fail(new Error('the TameFlare gateway refused CONNECT ' + target + ': HTTP ' + status +
          why));
        return;
      }
      const rest = buffer.subarray(end + 4);
      if (rest.length) socket.unshift(rest);
      socket.removeListener('error', fail);
      settled = true;
      callback(null, socket);
    };
    socket.on('data', onData);
  }

  // ---- 1. Node's http/https agents -----------------------------------------------------

  // The tunnel as a stream that exists at once: an agent's createConnection must return its
  // socket (agentkeepalive's does), so TLS starts on this and is held until the CONNECT is
  // answered.
  class GatewayTunnel extends Duplex {
    constructor(target) {
      super();
      this.raw = null;
      this.held = null;
      this.refed = true;
      connectThrough(target, (err, raw) => this.opened(err, raw));
    }

    opened(err, raw) {
      if (err) return this.destroy(err);
      if (this.destroyed) return raw.destroy();
      this.raw = raw;
      let ended = false;
      raw.on('data', (chunk) => {
        if (!this.push(chunk)) raw.pause();
      });
      raw.on('end', () => {
        ended = true;
        this.push(null);
      });
      raw.on('error', (error) => this.destroy(error));
      raw.on('close', () => ended || this.destroy());
      if (!this.refed) raw.unref();
      raw.resume();
      const held = this.held;
      this.held = null;
      if (held) held();
    }

    _read() {
      if (this.raw) this.raw.resume();
    }

    _write(chunk, encoding, callback) {
      if (this.raw) this.raw.write(chunk, encoding, callback);
      else this.held = () => this._write(chunk, encoding, callback);
    }

    _final(callback) {
      if (!this.raw) this.held = () => this._final(callback);
      else if (this.raw.destroyed) callback();
      else this.raw.end(() => callback());
    }

    _destroy(err, callback) {
      if (this.raw) this.raw.destroy();
      callback(err);
    }

    setRef(on) {
      this.refed = on;
      if (this.raw) (on ? this.raw.ref() : this.raw.unref());
    }
  }

  function tunnelledTls(options) {
    const port = Number(options.port) || 443;
    const tunnel = new GatewayTunnel(authority(bare(options.host), port, -1));
    const socket = tls.connect({ ...options, socket: tunnel, path: undefined });
    // keep-alive pools unref idle sockets: the TCP connection is the tunnel's
    socket.ref = () => (tunnel.setRef(true), socket);
    socket.unref = () => (tunnel.setRef(false), socket);
    if (options.timeout) socket.setTimeout(options.timeout);
    return socket;
  }

  // A plain http:// connection to the gateway for one origin (Node's agents pool connections
  // by origin). Each request head written on it becomes a proxy request as it goes out: the
  // origin's URL in the request line and the agent's Proxy-Authorization, which therefore
  // exists only in the bytes sent to the gateway.
  const sent = new WeakSet(); // the requests whose head went out already
  function toGateway(origin) {
    const socket = net.connect(gateway.port, gateway.host);
    const { write } = socket; // (set after connect, which puts back Node's own)
    socket.write = function (chunk, ...rest) {
      const req = this._httpMessage; // Node writes a request's head whole, first
      const head = req && req._header;
      if (typeof chunk === 'string' && typeof head === 'string' && !sent.has(req) &&
          chunk.startsWith(head)) {
        sent.add(req);
        chunk = asProxyRequest(head, origin) + chunk.slice(head.length);
      }
      return write.call(this, chunk, ...rest);
    };
    return socket;
  }

  function asProxyRequest(head, origin) {
    const lines = head.split('\r\n').filter((line, index) =>
      index === 0 || !/^proxy-authorization\s*:/i.test(line));
    const [method, target, version] = lines[0].split(' ');
    if (target.startsWith('/')) lines[0] = method + ' http://' + origin + target + ' ' + version;
    if (gateway.auth) lines.splice(lines.length - 2, 0, 'Proxy-Authorization: ' + gateway.auth);
    return lines.join('\r\n');
  }

  // Every connection Node's agents open to a host that is not bypassed goes to the gateway,
  // whoever asks for it (a subclass calling Node's createConnection, a request's own
  // connection function given an agent below). Options are the agent's merged over the
  // request's, as Node's createSocket passes them: an agent bound to a unix socket has it.
  function routed(original) {
    return function createConnection(options, ...rest) {
      const target = targetOf(this, options);
      if (!target) return original.call(this, options, ...rest);
      if (target.secure) return tunnelledTls(options);
      const socket = toGateway(authority(target.host, target.port, 80));
      if (options.timeout) socket.setTimeout(options.timeout);
      return socket;
    };
  }

  function targetOf(agent, options) {
    if (!options || typeof options !== 'object' || options.socketPath) return null;
    const secure = (options.protocol || agent.protocol) === 'https:';
    const host = bare(options.host || options.hostname || 'localhost');
    const port = Number(options.port) || agent.defaultPort || (secure ? 443 : 80);
    return bypassed(host, port) ? null : { secure, host, port };
  }

  function routeNodeAgents() {
    const http = require('http');
    const https = require('https');
    for (const { Agent } of [http, https]) {
      Agent.prototype.createConnection = routed(Agent.prototype.createConnection);
    }

    // A request with a connection function of its own and no agent (the `ws` package's, any
    // `createConnection` option) never reaches an agent in Node: it gets one, of the kind
    // `agent: false` makes, whose connections are that function's only where NO_PROXY allows.
    function withAgent(args, Agent) {
      const at = typeof args[0] === 'string' || args[0] instanceof URL ? 1 : 0;
      const options = args[at];
      if (!options || typeof options !== 'object' || options.agent != null ||
          typeof options.createConnection !== 'function') return args;
      const agent = new Agent();
      agent.createConnection = routed(options.createConnection);
      const changed = [...args];
      changed[at] = { ...options, agent };
      return changed;
    }
    for (const mod of [http, https]) {
      const { request, get, Agent } = mod;
      mod.request = function (...args) { return request.apply(this, withAgent(args, Agent)); };
      mod.get = function (...args) { return get.apply(this, withAgent(args, Agent)); };
    }

    // ... and one made without http.request (`new http.ClientRequest(...)`) is refused before
    // it writes a byte, unless NO_PROXY names its host.
    const { onSocket } = http.ClientRequest.prototype;
    http.ClientRequest.prototype.onSocket = function (socket, err) {
      if (!this.agent && !err && !this.socketPath && !bypassed(this.host, -1)) {
        socket.destroy();
        err = new Error('tf run: ' + this.host + ' is reached only through the TameFlare ' +
          'gateway: a request with a connection of its own goes through it when made with ' +
          'http.request or https.request');
      }
      return onSocket.call(this, socket, err);
    };
    installed.agents = true;
  }

  // ---- 2. the global fetch (undici) ----------------------------------------------------

  const kGlobalDispatcher = Symbol.for('undici.globalDispatcher.1');

  // undici's Agent class: the project's `undici` package when it resolves (its own
  // `request`/`fetch` then meet a dispatcher of their version), else the one bundled in Node,
  // which only Node's fetch reaches (none with --no-experimental-fetch).
  function undiciAgent() {
    const paths = [process.cwd()];
    if (process.argv[1] && typeof process._eval !== 'string') { // the script's own directory
      paths.unshift(path.dirname(path.resolve(process.argv[1])));
    }
    if (process.env.TF_NODE_MODULES) paths.push(process.env.TF_NODE_MODULES);
    try {
      const undici = require(require.resolve('undici', { paths }));
      const Agent = undici.Agent;
      if (typeof Agent === 'function') return { Agent, from: 'undici package' };
    } catch (_) { /* not installed: Node's own */ }
    if (typeof globalThis.fetch !== 'function') return { Agent: null, from: 'not routed' };
    fetch('data:,').catch(() => {}); // loads Node's bundled undici, which registers its Agent
    const current = globalThis[kGlobalDispatcher];
    return current && typeof current.constructor === 'function'
      ? { Agent: current.constructor, from: 'built-in undici' }
      : { Agent: null, from: 'not routed' };
  }

  // Nothing to make a dispatcher from: an undici package loaded later (from elsewhere) finds
  // this one installed and keeps it, so its requests are refused rather than sent directly.
  const refusing = {
    dispatch(opts, handler) {
      const error = new Error('tf run: ' + (opts.origin || 'this request') + ' is not routed ' +
        'through the TameFlare gateway: no undici to route it with (Node\'s fetch turned off, ' +
        'and no `undici` package beside the script or in the working directory)');
      queueMicrotask(() => (handler.onError ? handler.onError(error)
        : handler.onResponseError(null, error)));
      return true;
    },
    close() { return Promise.resolve(); },
    destroy() { return Promise.resolve(); },
  };

  function direct(host, port, https, opts, callback) {
    const socket = https
      ? tls.connect({ host, port, servername: opts.servername ||
        (net.isIP(host) ? undefined : host), ALPNProtocols: ['http/1.1'] })
      : net.connect(port, host);
    let settled = false;
    socket.once(https ? 'secureConnect' : 'connect', () => {
      if (!settled) { settled = true; callback(null, socket); }
    });
    socket.once('error', (err) => {
      if (!settled) { settled = true; socket.destroy(); callback(err, null); }
    });
  }

  // undici's connector: https:// through a CONNECT tunnel (an http:// origin that is not
  // bypassed never gets here: it goes to the gateway as a proxy request, below).
  function tunnelConnector(opts, callback) {
    const https = opts.protocol === 'https:';
    const host = bare(opts.hostname);
    const port = Number(opts.port) || (https ? 443 : 80);
    if (bypassed(host, port)) {
      direct(host, port, https, opts, callback);
      return;
    }
    if (!https) { // (dispatch sends these to the gateway as proxy requests: never here)
      callback(new Error('tf run: http://' + authority(host, port, 80) +
        ' is reached only through the TameFlare gateway, as a proxy request'), null);
      return;
    }
    connectThrough(authority(host, port, -1), (err, socket) => {
      if (err) return callback(err, null);
      const secure = tls.connect({
        socket,
        servername: opts.servername || (net.isIP(host) ? undefined : host),
        ALPNProtocols: ['http/1.1'],
      });
      let settled = false;
      secure.once('secureConnect', () => {
        if (!settled) { settled = true; callback(null, secure); }
      });
      secure.once('error', (error) => {
        if (!settled) { settled = true; secure.destroy(); callback(error, null); }
      });
    });
  }

  // An http:// request as a proxy request: to the gateway, its target URL in the request
  // line, its own Host, and the agent's Proxy-Authorization.
  function proxied(opts) {
    const target = new URL(opts.origin);
    const extra = { host: target.host };
    if (gateway.auth) extra['proxy-authorization'] = gateway.auth;
    const headers = [];
    const raw = opts.headers || [];
    const pairs = Array.isArray(raw)
      ? (raw.length && Array.isArray(raw[0]) ? raw : raw.reduce((all, item, index) =>
        (index % 2 ? all[all.length - 1].push(item) : all.push([item]), all), []))
      : Object.entries(raw);
    for (const [name, value] of pairs) {
      const lower = String(name).toLowerCase();
      if (lower !== 'host' && lower !== 'proxy-authorization') headers.push(name, value);
    }
    for (const [name, value] of Object.entries(extra)) headers.push(name, value);
    return { ...opts, origin: gateway.origin, path: target.origin + opts.path, headers };
  }

  function routeFetch() {
    const { Agent, from } = undiciAgent();
    if (!Agent) {
      globalThis[kGlobalDispatcher] = refusing;
      return;
    }
    const toProxy = new Agent();
    class TameFlareAgent extends Agent {
      dispatch(opts, handler) {
        const origin = opts.origin ? new URL(opts.origin) : null;
        if (origin && origin.protocol === 'http:' &&
            !bypassed(origin.hostname, Number(origin.port) || 80)) {
          return toProxy.dispatch(proxied(opts), handler);
        }
        return super.dispatch(opts, handler);
      }
    }
    globalThis[kGlobalDispatcher] = new TameFlareAgent({ connect: tunnelConnector });
    installed.fetch = from;
  }

  routeNodeAgents();
  routeFetch();
})();

"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.VERSION = void 0;
/** This package's version (a test keeps it equal to package.json's). */
exports.VERSION = "0.1.0";
